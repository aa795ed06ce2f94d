// The dashboard: host CPU, memory and disk (now and over the last hour), VMs by state, recent
// tasks and events.

import { useEffect } from 'preact/hooks';
import { api, type Task } from '../api';
import { Chart } from '../charts';
import { ago, bytes, percent } from '../format';
import type { Live } from '../live';
import { countByState } from '../vms';
import { StateBadge, useLoad } from '../ui';

interface HostSample {
  t: number;
  cpu: number;
  mem_used: number;
  mem_total: number;
  disk_used: number;
  disk_total: number;
  load: number;
}

interface HostInfo {
  version: string;
  kvm: string;
  cpus: number;
  warnings: string[];
}

/** The dashboard page. */
export function Dashboard(props: { live: Live }) {
  const host = useLoad(() => api<HostInfo>('GET', '/host'), []);
  const metrics = useLoad(() => api<{ samples: HostSample[] }>('GET', '/host/metrics'), []);
  const tasks = useLoad(() => api<Task[]>('GET', '/tasks?limit=8'), [props.live.events[0]?.seq]);
  useEffect(() => {
    const t = setInterval(metrics.reload, 5000);
    return () => clearInterval(t);
  }, []);
  const samples = metrics.data?.samples ?? [];
  const last = samples[samples.length - 1];
  const counts = countByState(props.live.vms);
  return (
    <div class="dashboard">
      <h2>Dashboard</h2>
      {host.data?.warnings.map((w) => <p class="warning">{w}</p>)}
      <section class="tiles">
        <div class="tile">
          <span class="k">CPU</span>
          <span class="v">{last ? percent(last.cpu) : '…'}</span>
          <span class="s">
            {host.data?.cpus ?? '?'} cores, load {last?.load.toFixed(2) ?? '…'}
          </span>
        </div>
        <div class="tile">
          <span class="k">Memory</span>
          <span class="v">{last ? bytes(last.mem_used) : '…'}</span>
          <span class="s">of {last ? bytes(last.mem_total) : '…'}</span>
        </div>
        <div class="tile">
          <span class="k">Disk</span>
          <span class="v">{last ? bytes(last.disk_used) : '…'}</span>
          <span class="s">of {last ? bytes(last.disk_total) : '…'}</span>
        </div>
        <div class="tile">
          <span class="k">VMs</span>
          <span class="v">{props.live.vms.length}</span>
          <span class="s states">
            {Object.entries(counts).map(([s, n]) => (
              <span>
                <StateBadge state={s} /> {n}
              </span>
            ))}
          </span>
        </div>
      </section>
      <section class="charts">
        <Chart title="CPU" series={[{ label: 'busy', values: samples.map((s) => s.cpu), cls: 'a' }]} fmt={percent} max={100} />
        <Chart
          title="Memory"
          series={[{ label: 'used', values: samples.map((s) => s.mem_used), cls: 'b' }]}
          fmt={bytes}
          max={last?.mem_total}
        />
      </section>
      <section class="two">
        <div class="card">
          <h3>Recent tasks</h3>
          <ul class="plain">
            {(tasks.data ?? []).map((t) => (
              <li>
                <span class={'task-' + t.status}>{t.status}</span> {t.kind} <b>{t.target}</b>{' '}
                <small>
                  {t.owner}, {ago(t.created)}
                </small>
              </li>
            ))}
          </ul>
        </div>
        <div class="card">
          <h3>Recent events</h3>
          <ul class="plain">
            {props.live.events.slice(0, 8).map((e) => (
              <li>
                {e.kind} <b>{e.target}</b>{' '}
                <small>
                  {e.user}, {ago(e.time)}
                </small>
              </li>
            ))}
          </ul>
        </div>
      </section>
      <p class="foot">
        dend {host.data?.version} · KVM: {host.data?.kvm}
      </p>
    </div>
  );
}
