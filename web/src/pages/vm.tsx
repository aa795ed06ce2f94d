// A VM's page: its state and the actions it allows (destructive ones ask first), and tabs for
// the summary, the console, tasks with their logs, usage graphs and snapshots.

import { useEffect, useState } from 'preact/hooks';
import { api } from '../api';
import type { Live } from '../live';
import { href } from '../route';
import { canOperate, type Session } from '../session';
import { Confirm, ErrorLine, StateBadge, message } from '../ui';
import { actionsFor, isDestructive, type Action } from '../vms';
import { Graphs, Snapshots, Summary, Tasks } from './vmtabs';

const TABS: [string, string][] = [
  ['summary', 'Summary'],
  ['console', 'Console'],
  ['tasks', 'Tasks'],
  ['graphs', 'Graphs'],
  ['snapshots', 'Snapshots'],
];

const LABEL: Record<Action, string> = {
  start: 'Start',
  stop: 'Stop',
  reboot: 'Reboot',
  pause: 'Pause',
  resume: 'Resume',
  delete: 'Delete',
  snapshot: 'Snapshot',
  clone: 'Clone',
  console: 'Console',
};

/** The VM page. */
export function VmPage(props: { live: Live; session: Session; name: string; tab: string }) {
  const vm = props.live.vms.find((v) => v.spec.name === props.name);
  const Console = useConsole(props.tab === 'console');
  const [asking, setAsking] = useState<Action | null>(null);
  const [input, setInput] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  if (!vm) {
    return (
      <div>
        <h2>{props.name}</h2>
        <p class="empty">
          No VM of this name (or not yet loaded). <a href={href({ page: 'vms' })}>All VMs</a>
        </p>
      </div>
    );
  }
  const name = encodeURIComponent(vm.spec.name);
  const operate = canOperate(props.session, vm);
  const run = async (a: Action, arg: string) => {
    setBusy(true);
    setError(null);
    try {
      if (a === 'delete') {
        await api('DELETE', `/vms/${name}`);
        location.hash = href({ page: 'vms' });
      } else if (a === 'snapshot') {
        await api('POST', `/vms/${name}/snapshots`, { name: arg, description: 'from the web console' });
      } else if (a === 'clone') {
        await api('POST', `/vms/${name}/clone`, { name: arg });
      } else if (a === 'console') {
        location.hash = href({ page: 'vm', name: vm.spec.name, tab: 'console' });
      } else {
        await api('POST', `/vms/${name}/${a}`);
      }
      await props.live.refresh(vm.spec.name);
    } catch (e) {
      setError(message(e));
    } finally {
      setBusy(false);
    }
  };
  const click = (a: Action) => {
    if (isDestructive(a) || a === 'snapshot' || a === 'clone') {
      setInput(a === 'clone' ? `${vm.spec.name}-clone` : a === 'snapshot' ? `snap-${Date.now() % 100000}` : '');
      setAsking(a);
    } else {
      void run(a, '');
    }
  };
  return (
    <div>
      <div class="toolbar">
        <h2>
          {vm.spec.name} <StateBadge state={vm.state} />
        </h2>
        {operate ? (
          <div class="actions">
            {actionsFor(vm.state).map((a) => (
              <button
                type="button"
                class={a === 'delete' ? 'danger' : a === 'start' ? 'primary' : ''}
                disabled={busy}
                onClick={() => click(a)}
              >
                {LABEL[a]}
              </button>
            ))}
          </div>
        ) : null}
      </div>
      <ErrorLine error={error} />
      <div class="tabs" role="tablist">
        {TABS.filter(([t]) => t !== 'console' || operate).map(([t, label]) => (
          <a role="tab" class={props.tab === t ? 'active' : ''} href={href({ page: 'vm', name: vm.spec.name, tab: t })}>
            {label}
          </a>
        ))}
      </div>
      {props.tab === 'console' && operate ? (
        Console ? (
          <Console vm={vm} />
        ) : (
          <p class="empty">Loading the console…</p>
        )
      ) : props.tab === 'tasks' ? (
        <Tasks live={props.live} vm={vm} />
      ) : props.tab === 'graphs' ? (
        <Graphs vm={vm} />
      ) : props.tab === 'snapshots' ? (
        <Snapshots vm={vm} operate={operate} live={props.live} />
      ) : (
        <Summary vm={vm} />
      )}
      {asking ? (
        <Confirm
          title={`${LABEL[asking]} ${vm.spec.name}?`}
          yes={LABEL[asking]}
          danger={isDestructive(asking)}
          onAnswer={(yes) => {
            const a = asking;
            setAsking(null);
            if (yes) void run(a, input);
          }}
        >
          {asking === 'delete' ? (
            <p>The VM and its disks are deleted. This cannot be undone.</p>
          ) : asking === 'stop' ? (
            <p>The guest is asked to shut down, then stopped hard after a timeout.</p>
          ) : asking === 'reboot' ? (
            <p>The guest shuts down and starts again on the same disks.</p>
          ) : (
            <label class="field">
              <span class="label">{asking === 'clone' ? 'Name of the new VM' : 'Snapshot name'}</span>
              <input value={input} onInput={(e) => setInput(e.currentTarget.value)} />
            </label>
          )}
        </Confirm>
      ) : null}
    </div>
  );
}

type ConsoleComponent = typeof import('../console').Console;

/** The console component, loaded (with xterm.js) the first time it is needed. */
function useConsole(wanted: boolean): ConsoleComponent | null {
  const [c, setC] = useState<ConsoleComponent | null>(null);
  useEffect(() => {
    if (wanted && !c) void import('../console').then((m) => setC(() => m.Console));
  }, [wanted]);
  return c;
}
