// The frame around every page: top bar with the user and logout, navigation, and the page the
// route names.

import { api } from './api';
import type { Live } from './live';
import { Dashboard } from './pages/dashboard';
import { CreateVm } from './pages/create';
import { Keys } from './pages/keys';
import { Tokens } from './pages/tokens';
import { Users } from './pages/users';
import { VmList } from './pages/vmlist';
import { VmPage } from './pages/vm';
import { href, type Route } from './route';
import { canCreate, isAdmin, type Session } from './session';
import { useLive, useRoute } from './ui';

function Nav(props: { route: Route; session: Session }) {
  const items: [Route, string][] = [
    [{ page: 'dashboard' }, 'Dashboard'],
    [{ page: 'vms' }, 'VMs'],
  ];
  if (canCreate(props.session)) items.push([{ page: 'create' }, 'Create VM']);
  if (isAdmin(props.session)) items.push([{ page: 'users' }, 'Users']);
  items.push([{ page: 'tokens' }, 'API tokens'], [{ page: 'keys' }, 'SSH keys']);
  const current = props.route.page === 'vm' ? 'vms' : props.route.page;
  return (
    <nav class="nav">
      {items.map(([r, label]) => (
        <a href={href(r)} class={r.page === current ? 'active' : ''}>
          {label}
        </a>
      ))}
    </nav>
  );
}

/** The logged-in console. */
export function Shell(props: { session: Session; live: Live; onLogout: () => void }) {
  const route = useRoute();
  const live = useLive(props.live);
  const logout = async () => {
    try {
      await api('DELETE', '/session');
    } finally {
      props.onLogout();
    }
  };
  const s = props.session;
  let page;
  switch (route.page) {
    case 'dashboard':
      page = <Dashboard live={live} />;
      break;
    case 'vms':
      page = <VmList live={live} session={s} />;
      break;
    case 'vm':
      page = <VmPage live={live} session={s} name={route.name} tab={route.tab} />;
      break;
    case 'create':
      page = <CreateVm live={live} />;
      break;
    case 'users':
      page = <Users />;
      break;
    case 'tokens':
      page = <Tokens />;
      break;
    case 'keys':
      page = <Keys session={s} />;
      break;
  }
  return (
    <div class="shell">
      <header class="top">
        <a class="brand" href="#/">
          Den
        </a>
        <span class={'conn ' + (live.connected ? 'on' : 'off')} title={live.connected ? 'live' : 'reconnecting'} />
        <span class="who">
          {s.user} <small>({s.role ?? 'no global role'})</small>
        </span>
        <button type="button" class="link" onClick={logout}>
          Log out
        </button>
      </header>
      <Nav route={route} session={s} />
      <main class="page">{page}</main>
    </div>
  );
}
