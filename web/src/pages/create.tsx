// The create-VM form: image, vCPUs, memory, disk, guest users and SSH keys, network. Checked
// here first, then by dend, whose field errors appear at the field they name.

import { useState } from 'preact/hooks';
import { api } from '../api';
import type { Live } from '../live';
import { href } from '../route';
import { ErrorLine, Field, fieldError, message, useLoad } from '../ui';
import { check, emptyForm, toSpec, type CreateForm, type Limits } from '../validate';

interface Image {
  name: string;
  kernel_release: string;
  root_disk_mib?: number | null;
}

/** The create-VM page. */
export function CreateVm(props: { live: Live }) {
  const images = useLoad(() => api<Image[]>('GET', '/images'), []);
  const limits = useLoad(() => api<Limits>('GET', '/host'), []);
  const nets = useLoad(() => api<{ name: string }[]>('GET', '/networks'), []);
  const [form, setForm] = useState<CreateForm>(emptyForm());
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof CreateForm) => (e: Event) => {
    const el = e.currentTarget as HTMLInputElement;
    setForm({ ...form, [k]: el.type === 'checkbox' ? el.checked : el.value });
  };
  const image = form.image || images.data?.[0]?.name || '';
  const submit = async (e: Event) => {
    e.preventDefault();
    const f = { ...form, image };
    const found = check(f, limits.data ?? { max_cpus: 64, max_memory_mib: 1 << 20 });
    setErrors(found);
    setError(null);
    if (Object.keys(found).length) return;
    setBusy(true);
    try {
      await api('POST', '/vms', toSpec(f));
      await props.live.refresh(f.name);
      location.hash = href({ page: 'vm', name: f.name, tab: 'summary' });
      // The create task runs first; the start follows once it has made the disks. A failed
      // start shows in the VM's tasks.
      if (f.start) void startWhenCreated(f.name, props.live).catch(() => props.live.refresh(f.name));
    } catch (err) {
      const at = fieldError(err);
      if (at) setErrors(at);
      else setError(message(err));
    } finally {
      setBusy(false);
    }
  };
  const img = images.data?.find((i) => i.name === image);
  return (
    <form class="card form" onSubmit={submit} noValidate>
      <h2>Create VM</h2>
      <Field label="Name" error={errors.name}>
        <input name="name" value={form.name} onInput={set('name')} placeholder="web1" autocomplete="off" />
      </Field>
      <Field label="Image" error={errors.image} hint={img ? `kernel ${img.kernel_release}` : undefined}>
        <select name="image" value={image} onChange={set('image')}>
          {(images.data ?? []).map((i) => (
            <option value={i.name}>{i.name}</option>
          ))}
        </select>
      </Field>
      <div class="row">
        <Field label="vCPUs" error={errors.cpus}>
          <input name="cpus" type="number" min="1" value={form.cpus} onInput={set('cpus')} />
        </Field>
        <Field label="Memory (MiB)" error={errors.memory_mib}>
          <input name="memory" type="number" min="64" step="64" value={form.memory} onInput={set('memory')} />
        </Field>
        <Field
          label="Disk (MiB)"
          error={errors.disk_mib}
          hint={img?.root_disk_mib ? `empty: the image's ${img.root_disk_mib} MiB` : 'empty: the image size'}
        >
          <input name="disk" type="number" min="64" value={form.disk} onInput={set('disk')} />
        </Field>
      </div>
      <Field label="Network" error={errors.nics}>
        <select name="network" value={form.network} onChange={set('network')}>
          {(nets.data ?? [{ name: 'default' }]).map((n) => (
            <option value={n.name}>{n.name}</option>
          ))}
          <option value="">no network</option>
        </select>
      </Field>
      <Field label="Guest users" error={undefined} hint="created at first boot with sudo, separated by spaces">
        <input name="users" value={form.users} onInput={set('users')} placeholder="dev" />
      </Field>
      <Field label="SSH keys" error={errors.first_boot} hint="one public key per line, for root and the users above">
        <textarea name="keys" rows={3} value={form.keys} onInput={set('keys')} placeholder="ssh-ed25519 AAAA… you@laptop" />
      </Field>
      <label class="check">
        <input name="start" type="checkbox" checked={form.start} onChange={set('start')} /> Start after creating
      </label>
      <ErrorLine error={error ?? images.error ?? limits.error} />
      <button class="primary" type="submit" disabled={busy}>
        {busy ? 'Creating…' : 'Create'}
      </button>
    </form>
  );
}

/** Waits (through the live list) until the new VM leaves `creating`, then starts it. */
async function startWhenCreated(name: string, live: Live): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const vm = live.vms.find((v) => v.spec.name === name);
    if (vm && vm.state !== 'creating') break;
    await new Promise<void>((resolve) => {
      const off = live.subscribe(() => {
        off();
        resolve();
      });
      setTimeout(() => {
        off();
        resolve();
      }, 1000);
    });
    if (i % 5 === 4) await live.refresh(name);
  }
  await api('POST', `/vms/${encodeURIComponent(name)}/start`);
  await live.refresh(name);
}
