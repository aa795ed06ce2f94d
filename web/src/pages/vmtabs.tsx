// The VM page's tabs other than the console: summary, tasks with logs, graphs, snapshots.

import { useEffect, useState } from 'preact/hooks';
import { api, type Task, type Vm } from '../api';
import { Chart } from '../charts';
import { ago, mib, percent, rate, bytes } from '../format';
import type { Live } from '../live';
import { ErrorLine, useAction, useLoad } from '../ui';

/** The VM's configuration. */
export function Summary(props: { vm: Vm }) {
  const { vm } = props;
  const rows: [string, string][] = [
    ['Image', vm.spec.image || `ISO ${vm.spec.iso ?? ''}`],
    ['Engine', vm.engine],
    ['vCPUs', String(vm.spec.cpus)],
    ['Memory', mib(vm.spec.memory_mib)],
    ['Root disk', vm.spec.disk_mib ? mib(vm.spec.disk_mib) : "the image's size"],
    ['Network', vm.nics.map((n) => `${n.network} ${n.ip} (${n.mac})`).join(', ') || 'none'],
    ['Ports', vm.spec.ports.map((p) => `${p.host_port} → ${p.guest_port}/${p.proto}`).join(', ') || 'none'],
    ['Restart', vm.spec.restart],
    ['Autostart', vm.spec.autostart ? 'yes' : 'no'],
    ['Guest users', (vm.spec.first_boot?.users ?? []).join(', ') || 'none'],
    ['Owner', vm.owner],
    ['Created', ago(vm.created)],
    ['Id', vm.id],
  ];
  return (
    <dl class="summary">
      {rows.map(([k, v]) => (
        <>
          <dt>{k}</dt>
          <dd>{v}</dd>
        </>
      ))}
    </dl>
  );
}

/** The VM's tasks, newest first, each with its log. */
export function Tasks(props: { live: Live; vm: Vm }) {
  const tasks = useLoad(() => api<Task[]>('GET', '/tasks?limit=200'), [props.vm.updated, props.live.events[0]?.seq]);
  const [open, setOpen] = useState<string | null>(null);
  const mine = (tasks.data ?? []).filter((t) => t.target === props.vm.spec.name);
  return (
    <div>
      <ErrorLine error={tasks.error} />
      {mine.length === 0 ? <p class="empty">No tasks yet.</p> : null}
      <ul class="tasks">
        {mine.map((t) => (
          <li>
            <button type="button" class="link" onClick={() => setOpen(open === t.id ? null : t.id)}>
              <span class={'task-' + t.status}>{t.status}</span> {t.kind} <small>{ago(t.created)}, {t.owner}</small>
            </button>
            {open === t.id ? (
              <pre class="log">
                {t.log}
                {t.error ? '\nerror: ' + t.error : ''}
              </pre>
            ) : null}
          </li>
        ))}
      </ul>
    </div>
  );
}

interface VmSample {
  t: number;
  cpu: number;
  mem: number;
  disk_read: number;
  disk_write: number;
  net_in: number;
  net_out: number;
}

/** CPU, memory, disk and network of the last hour, refreshed every sample interval. */
export function Graphs(props: { vm: Vm }) {
  const m = useLoad(
    () => api<{ interval: number; samples: VmSample[] }>('GET', `/vms/${encodeURIComponent(props.vm.spec.name)}/metrics`),
    [props.vm.spec.name],
  );
  useEffect(() => {
    const t = setInterval(m.reload, 5000);
    return () => clearInterval(t);
  }, []);
  const s = m.data?.samples ?? [];
  const col = (f: (x: VmSample) => number) => s.map(f);
  return (
    <div>
      <ErrorLine error={m.error} />
      {s.length === 0 ? <p class="empty">No samples yet: they come every {m.data?.interval ?? 5} s while the VM runs.</p> : null}
      <section class="charts">
        <Chart title="CPU (of one host core)" series={[{ label: 'used', values: col((x) => x.cpu), cls: 'a' }]} fmt={percent} />
        <Chart title="Memory (engine)" series={[{ label: 'resident', values: col((x) => x.mem), cls: 'b' }]} fmt={bytes} />
        <Chart
          title="Disk"
          series={[
            { label: 'read', values: col((x) => x.disk_read), cls: 'a' },
            { label: 'write', values: col((x) => x.disk_write), cls: 'c' },
          ]}
          fmt={rate}
        />
        <Chart
          title="Network"
          series={[
            { label: 'in', values: col((x) => x.net_in), cls: 'b' },
            { label: 'out', values: col((x) => x.net_out), cls: 'c' },
          ]}
          fmt={rate}
        />
      </section>
    </div>
  );
}

interface Snapshot {
  name: string;
  description: string;
  created: number;
}

/** Snapshots with rollback and delete. */
export function Snapshots(props: { vm: Vm; operate: boolean; live: Live }) {
  const name = encodeURIComponent(props.vm.spec.name);
  const snaps = useLoad(() => api<Snapshot[]>('GET', `/vms/${name}/snapshots`), [name, props.live.events[0]?.seq]);
  const { error, run } = useAction();
  const act = async (method: string, path: string) => {
    await run(() => api(method, path));
    snaps.reload();
  };
  return (
    <div>
      <ErrorLine error={snaps.error ?? error} />
      {(snaps.data ?? []).length === 0 ? <p class="empty">No snapshots.</p> : null}
      <ul class="plain">
        {(snaps.data ?? []).map((s) => (
          <li>
            <b>{s.name}</b> <small>{ago(s.created)}</small> {s.description}
            {props.operate ? (
              <span class="row-actions">
                <button type="button" onClick={() => act('POST', `/vms/${name}/snapshots/${encodeURIComponent(s.name)}/rollback`)}>
                  Roll back
                </button>
                <button type="button" class="danger" onClick={() => act('DELETE', `/vms/${name}/snapshots/${encodeURIComponent(s.name)}`)}>
                  Delete
                </button>
              </span>
            ) : null}
          </li>
        ))}
      </ul>
    </div>
  );
}
