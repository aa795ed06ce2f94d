// Live state: the VM list kept current by the events WebSocket (no polling). After a drop it
// reconnects with growing pauses and resumes after the last event it saw, so nothing is missed.

import { api, type DenEvent, type Vm } from './api';
import { effectOf, remove, upsert } from './vms';

type Listener = () => void;

/** Pause before reconnect attempt `n` (0-based), in ms: 0.5 s doubling to 5 s. */
export function backoff(n: number): number {
  return Math.min(5000, 500 * 2 ** Math.min(n, 4));
}

/** The VM list and recent events, pushed by dend. */
export class Live {
  vms: Vm[] = [];
  events: DenEvent[] = [];
  connected = false;
  private lastSeq = 0;
  private ws: WebSocket | null = null;
  private tries = 0;
  private stopped = false;
  private listeners = new Set<Listener>();
  private eventListeners = new Set<(e: DenEvent) => void>();

  /** Loads the list and the newest events, then follows the stream. */
  async start(): Promise<void> {
    this.stopped = false;
    try {
      const recent = await api<DenEvent[]>('GET', '/events?tail=20');
      this.events = recent.reverse();
      this.lastSeq = recent.reduce((m, e) => Math.max(m, e.seq), 0);
    } catch {
      // Users without the viewer role cannot read events; the list still loads.
    }
    this.vms = await api<Vm[]>('GET', '/vms');
    this.notify();
    this.connect();
  }

  /** Stops following (on logout). */
  stop(): void {
    this.stopped = true;
    this.ws?.close();
    this.ws = null;
  }

  /** Calls `f` on every change; returns the unsubscribe function. */
  subscribe(f: Listener): () => void {
    this.listeners.add(f);
    return () => this.listeners.delete(f);
  }

  /** Calls `f` on every event; returns the unsubscribe function. */
  onEvent(f: (e: DenEvent) => void): () => void {
    this.eventListeners.add(f);
    return () => this.eventListeners.delete(f);
  }

  /** Fetches one VM again (after an action) and updates the list. */
  async refresh(name: string): Promise<void> {
    try {
      this.vms = upsert(this.vms, await api<Vm>('GET', `/vms/${encodeURIComponent(name)}`));
    } catch (e) {
      if ((e as { status?: number }).status === 404) this.vms = remove(this.vms, name);
    }
    this.notify();
  }

  private notify(): void {
    for (const f of this.listeners) f();
  }

  private connect(): void {
    if (this.stopped) return;
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/api/v1/events/ws?after=${this.lastSeq}`);
    this.ws = ws;
    ws.onopen = () => {
      this.tries = 0;
      this.connected = true;
      this.notify();
    };
    ws.onmessage = (m) => this.handle(m.data);
    ws.onclose = () => {
      this.connected = false;
      this.notify();
      if (this.stopped || this.ws !== ws) return;
      setTimeout(() => this.connect(), backoff(this.tries++));
    };
  }

  private handle(data: unknown): void {
    if (typeof data !== 'string') return;
    let ev: DenEvent;
    try {
      ev = JSON.parse(data) as DenEvent;
    } catch {
      return;
    }
    if (ev.seq <= this.lastSeq) return;
    this.lastSeq = ev.seq;
    this.events = [ev, ...this.events].slice(0, 50);
    for (const f of this.eventListeners) f(ev);
    const effect = effectOf(ev);
    if (effect && 'remove' in effect) {
      this.vms = remove(this.vms, effect.remove);
      this.notify();
    } else if (effect) {
      void this.refresh(effect.refetch);
    } else {
      this.notify();
    }
  }
}
