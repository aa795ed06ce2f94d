// Users (admins only): add with a role and password, change roles, grant roles on single VMs,
// remove.

import { useState } from 'preact/hooks';
import { api, type Vm } from '../api';
import type { Role } from '../session';
import { ErrorLine, Field, useAction, useLoad } from '../ui';

interface User {
  name: string;
  role: Role | null;
  has_password: boolean;
  grants: Record<string, Role>;
}

/** The users page. */
export function Users() {
  const users = useLoad(() => api<User[]>('GET', '/users'), []);
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [role, setRole] = useState<string>('viewer');
  const { errors, error, run } = useAction();
  const act = async (f: () => Promise<unknown>) => {
    const ok = await run(f);
    users.reload();
    return ok;
  };
  const add = async (e: Event) => {
    e.preventDefault();
    const body = { name, password: password || undefined, role: role || null };
    if (await act(() => api('POST', '/users', body))) {
      setName('');
      setPassword('');
    }
  };
  return (
    <div>
      <h2>Users</h2>
      <ErrorLine error={users.error ?? error} />
      <table class="list">
        <thead>
          <tr>
            <th>User</th>
            <th>Role</th>
            <th>Grants</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(users.data ?? []).map((u) => (
            <tr>
              <td>{u.name}</td>
              <td>
                <select
                  aria-label={`Role of ${u.name}`}
                  value={u.role ?? ''}
                  onChange={(e) => act(() => api('PUT', `/users/${u.name}/role`, { role: e.currentTarget.value || null }))}
                >
                  <option value="">none</option>
                  <option value="viewer">viewer</option>
                  <option value="operator">operator</option>
                  <option value="admin">admin</option>
                </select>
              </td>
              <td>
                {Object.entries(u.grants)
                  .map(([vm, r]) => `${r} on ${vm}`)
                  .join(', ') || '-'}
              </td>
              <td>
                <button type="button" class="danger" onClick={() => confirm(`Remove user ${u.name}?`) && act(() => api('DELETE', `/users/${u.name}`))}>
                  Remove
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="card form" onSubmit={add} noValidate>
        <h3>Add a user</h3>
        <Field label="Name" error={errors.name}>
          <input name="new-user" value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </Field>
        <Field label="Password" error={errors.password} hint="optional: without one, the user logs in with SSH keys or tokens">
          <input name="new-password" type="password" autocomplete="new-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </Field>
        <Field label="Role" error={errors.role}>
          <select name="new-role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
            <option value="">none (grants only)</option>
            <option value="viewer">viewer</option>
            <option value="operator">operator</option>
            <option value="admin">admin</option>
          </select>
        </Field>
        <button class="primary" type="submit">
          Add user
        </button>
      </form>
      <Grant users={(users.data ?? []).map((u) => u.name)} onDone={users.reload} />
    </div>
  );
}

/** Gives a user a role on one VM, or takes it back. */
function Grant(props: { users: string[]; onDone: () => void }) {
  const vms = useLoad(() => api<Vm[]>('GET', '/vms'), []);
  const [user, setUser] = useState('');
  const [vm, setVm] = useState('');
  const [role, setRole] = useState('operator');
  const { errors, error, run } = useAction();
  const who = user || props.users[0] || '';
  const which = vm || vms.data?.[0]?.spec.name || '';
  const grant = async (e: Event) => {
    e.preventDefault();
    await run(() => api('PUT', `/users/${encodeURIComponent(who)}/grants/${encodeURIComponent(which)}`, { role: role || null }));
    props.onDone();
  };
  return (
    <form class="card form" onSubmit={grant} noValidate>
      <h3>Access to one VM</h3>
      <div class="row">
        <Field label="User" error={errors.user}>
          <select name="grant-user" value={who} onChange={(e) => setUser(e.currentTarget.value)}>
            {props.users.map((u) => (
              <option value={u}>{u}</option>
            ))}
          </select>
        </Field>
        <Field label="VM" error={errors.vm}>
          <select name="grant-vm" value={which} onChange={(e) => setVm(e.currentTarget.value)}>
            {(vms.data ?? []).map((v) => (
              <option value={v.spec.name}>{v.spec.name}</option>
            ))}
          </select>
        </Field>
        <Field label="Role" error={errors.role}>
          <select name="grant-role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
            <option value="viewer">viewer</option>
            <option value="operator">operator</option>
            <option value="admin">admin</option>
            <option value="">none (revoke)</option>
          </select>
        </Field>
      </div>
      <ErrorLine error={error ?? vms.error} />
      <button type="submit" disabled={!who || !which}>
        Set access
      </button>
    </form>
  );
}
