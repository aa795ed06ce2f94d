// The VM list: live state from the events stream, search and a state filter.

import { useState } from 'preact/hooks';
import { mib } from '../format';
import type { Live } from '../live';
import { href } from '../route';
import { canCreate, type Session } from '../session';
import { StateBadge } from '../ui';
import { filterVms } from '../vms';

const STATES = ['', 'running', 'stopped', 'paused', 'starting', 'stopping', 'creating', 'crashed'];

/** The VM list page. */
export function VmList(props: { live: Live; session: Session }) {
  const [query, setQuery] = useState('');
  const [state, setState] = useState('');
  const vms = filterVms(props.live.vms, query, state);
  return (
    <div>
      <div class="toolbar">
        <h2>VMs</h2>
        <input
          type="search"
          placeholder="Search name, image, owner, IP"
          aria-label="Search VMs"
          value={query}
          onInput={(e) => setQuery(e.currentTarget.value)}
        />
        <select aria-label="Filter by state" value={state} onChange={(e) => setState(e.currentTarget.value)}>
          {STATES.map((s) => (
            <option value={s}>{s || 'all states'}</option>
          ))}
        </select>
        {canCreate(props.session) ? (
          <a class="button primary" href={href({ page: 'create' })}>
            Create VM
          </a>
        ) : null}
      </div>
      {vms.length === 0 ? (
        <p class="empty">{props.live.vms.length ? 'No VM matches.' : 'No VMs yet.'}</p>
      ) : (
        <table class="vms">
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th>Image</th>
              <th>vCPUs</th>
              <th>Memory</th>
              <th>Address</th>
              <th>Owner</th>
            </tr>
          </thead>
          <tbody>
            {vms.map((v) => (
              <tr data-vm={v.spec.name}>
                <td data-k="Name">
                  <a href={href({ page: 'vm', name: v.spec.name, tab: 'summary' })}>{v.spec.name}</a>
                </td>
                <td data-k="State">
                  <StateBadge state={v.state} />
                </td>
                <td data-k="Image">{v.spec.image || v.spec.iso}</td>
                <td data-k="vCPUs">{v.spec.cpus}</td>
                <td data-k="Memory">{mib(v.spec.memory_mib)}</td>
                <td data-k="Address">{v.nics.map((n) => n.ip).join(', ')}</td>
                <td data-k="Owner">{v.owner}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
