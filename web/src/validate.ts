// The create-VM form: its fields, checks done before sending (the same rules as dend), and
// the request body it becomes. dend checks again; its field errors are shown at the field.

/** The form as typed. */
export interface CreateForm {
  name: string;
  image: string;
  cpus: string;
  memory: string;
  disk: string;
  users: string;
  keys: string;
  network: string;
  start: boolean;
}

/** An empty form. */
export function emptyForm(image = ''): CreateForm {
  return { name: '', image, cpus: '1', memory: '512', disk: '', users: '', keys: '', network: 'default', start: true };
}

/** Limits from /api/v1/host. */
export interface Limits {
  max_cpus: number;
  max_memory_mib: number;
}

const NAME = /^[a-z0-9]([a-z0-9-]{0,62})$/;

/** Field name -> message, for every problem found. Field names are the API's. */
export function check(f: CreateForm, limits: Limits): Record<string, string> {
  const e: Record<string, string> = {};
  if (!NAME.test(f.name) || f.name.endsWith('-')) e.name = 'use a-z, 0-9 and -, 1 to 63 characters, not ending in -';
  if (!f.image) e.image = 'choose an image';
  const cpus = Number(f.cpus);
  if (!Number.isInteger(cpus) || cpus < 1 || cpus > limits.max_cpus) e.cpus = `1 to ${limits.max_cpus} vCPUs`;
  const mem = Number(f.memory);
  if (!Number.isInteger(mem) || mem < 64 || mem > limits.max_memory_mib)
    e.memory_mib = `64 to ${limits.max_memory_mib} MiB`;
  if (f.disk.trim()) {
    const d = Number(f.disk);
    if (!Number.isInteger(d) || d < 64) e.disk_mib = 'a whole number of MiB, at least 64 (or empty for the image size)';
  }
  for (const u of words(f.users)) {
    if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(u) || u === 'root') {
      e.first_boot = `\`${u}\` is not a guest user name (a-z, 0-9, - and _, not root)`;
      break;
    }
  }
  for (const k of lines(f.keys)) {
    if (!/^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-\S+) [A-Za-z0-9+/=]+/.test(k)) {
      e.first_boot = 'each SSH key goes on its own line, like `ssh-ed25519 AAAA... you@host`';
      break;
    }
  }
  return e;
}

function words(s: string): string[] {
  return s.split(/[\s,]+/).filter(Boolean);
}

function lines(s: string): string[] {
  return s
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
}

/** The `POST /api/v1/vms` body of a checked form. */
export function toSpec(f: CreateForm): Record<string, unknown> {
  const spec: Record<string, unknown> = {
    name: f.name,
    image: f.image,
    cpus: Number(f.cpus),
    memory_mib: Number(f.memory),
    nics: f.network ? [{ network: f.network }] : [],
  };
  if (f.disk.trim()) spec.disk_mib = Number(f.disk);
  const users = words(f.users);
  const keys = lines(f.keys);
  if (users.length || keys.length) spec.first_boot = { users, ssh_keys: keys };
  return spec;
}
