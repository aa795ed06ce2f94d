// The VM list's logic, kept free of the DOM: what an event means for the list, searching and
// filtering, counts by state, and which actions a state allows.

import type { DenEvent, Vm } from './api';

/** What the list must do after an event. */
export type EventEffect = { refetch: string } | { remove: string } | null;

/** An event's effect on the VM list: VM events refetch that VM, a deletion removes it. */
export function effectOf(ev: DenEvent): EventEffect {
  if (!ev.kind.startsWith('vm.') || !ev.target) return null;
  if (ev.kind === 'vm.deleted') return { remove: ev.target };
  if (ev.kind === 'vm.console_attached') return null;
  return { refetch: ev.target };
}

/** Puts `vm` into `list` (replacing the one with its id or name), keeping name order. */
export function upsert(list: Vm[], vm: Vm): Vm[] {
  const rest = list.filter((v) => v.id !== vm.id && v.spec.name !== vm.spec.name);
  return [...rest, vm].sort((a, b) => a.spec.name.localeCompare(b.spec.name));
}

/** `list` without the VM named `name`. */
export function remove(list: Vm[], name: string): Vm[] {
  return list.filter((v) => v.spec.name !== name);
}

/** VMs matching a search (name, image, owner, IP; every word must match) and a state filter. */
export function filterVms(list: Vm[], query: string, state: string): Vm[] {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  return list.filter((v) => {
    if (state && v.state !== state) return false;
    const hay = [v.spec.name, v.spec.image, v.spec.iso ?? '', v.owner, v.state, ...v.nics.map((n) => n.ip)]
      .join(' ')
      .toLowerCase();
    return words.every((w) => hay.includes(w));
  });
}

/** How many VMs are in each state. */
export function countByState(list: Vm[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of list) out[v.state] = (out[v.state] ?? 0) + 1;
  return out;
}

/** A VM action. */
export type Action = 'start' | 'stop' | 'reboot' | 'pause' | 'resume' | 'delete' | 'snapshot' | 'clone' | 'console';

/** The actions that make sense in `state`. */
export function actionsFor(state: string): Action[] {
  switch (state) {
    case 'stopped':
    case 'crashed':
      return ['start', 'snapshot', 'clone', 'delete'];
    case 'running':
      return ['console', 'stop', 'reboot', 'pause', 'snapshot'];
    case 'paused':
      return ['console', 'resume', 'stop'];
    default:
      return [];
  }
}

/** Whether an action destroys or interrupts something (these ask for confirmation). */
export function isDestructive(a: Action): boolean {
  return a === 'delete' || a === 'stop' || a === 'reboot';
}
