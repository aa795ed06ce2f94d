// The REST API client: JSON in and out, the CSRF header on every change, and Den's error shape
// ({code, message, field?}) turned into ApiError so forms can show a message at its field.

/** An error answer from dend. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

let csrf: string | null = null;
let onUnauthorized: () => void = () => {};

/** Remembers the session's CSRF value (from /api/v1/session). */
export function setCsrf(value: string | null): void {
  csrf = value;
}

/** What to do when the session has ended (401 on a request). */
export function whenUnauthorized(f: () => void): void {
  onUnauthorized = f;
}

/** Turns an error body into an ApiError; tolerant of bodies that are not Den's JSON. */
export function toApiError(status: number, body: unknown): ApiError {
  const b = (body ?? {}) as { code?: unknown; message?: unknown; field?: unknown };
  const message = typeof b.message === 'string' ? b.message : `request failed with HTTP ${status}`;
  const code = typeof b.code === 'string' ? b.code : 'http_' + status;
  const field = typeof b.field === 'string' ? b.field : undefined;
  return new ApiError(status, code, message, field);
}

/** One API call: `path` is under /api/v1. */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  let resp: Response;
  try {
    resp = await fetch('/api/v1' + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
  } catch (e) {
    throw new ApiError(0, 'network', `cannot reach dend (${String(e)}); is it running?`);
  }
  const text = await resp.text();
  let json: unknown = undefined;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (!resp.ok) {
    if (resp.status === 401 && path !== '/session') onUnauthorized();
    throw toApiError(resp.status, json);
  }
  return json as T;
}

/** A VM as dend returns it. */
export interface Vm {
  id: string;
  owner: string;
  state: string;
  engine: string;
  created: number;
  updated: number;
  provisioned?: boolean;
  spec: {
    name: string;
    image: string;
    iso?: string;
    kind: string;
    cpus: number;
    memory_mib: number;
    disk_mib?: number;
    restart: string;
    autostart: boolean;
    nics: { network: string }[];
    ports: { host_port: number; guest_port: number; proto: string; local?: boolean }[];
    first_boot?: { users?: string[]; ssh_keys?: string[] };
  };
  nics: { network: string; mac: string; ip: string; tap: string }[];
  running?: { pid: number } | null;
}

/** A task as dend returns it. */
export interface Task {
  id: string;
  kind: string;
  target: string;
  owner: string;
  status: string;
  progress: number;
  log: string;
  error?: string | null;
  created: number;
  finished?: number | null;
}

/** An event of the events stream. */
export interface DenEvent {
  seq: number;
  time: number;
  user: string;
  kind: string;
  target: string;
  detail: string;
}
