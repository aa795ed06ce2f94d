// SSH keys for the SSH gateway: one's own, or any user's for admins.

import { useState } from 'preact/hooks';
import { api } from '../api';
import { isAdmin, type Session } from '../session';
import { ErrorLine, Field, useAction, useLoad } from '../ui';

interface Key {
  fingerprint: string;
  user: string;
  line: string;
  created: number;
}

/** The SSH keys page. */
export function Keys(props: { session: Session }) {
  const [user, setUser] = useState(props.session.user);
  const keys = useLoad(() => api<Key[]>('GET', `/users/${encodeURIComponent(user)}/keys`), [user]);
  const [key, setKey] = useState('');
  const { errors, error, run } = useAction();
  const base = `/users/${encodeURIComponent(user)}/keys`;
  const add = async (e: Event) => {
    e.preventDefault();
    if (await run(() => api('POST', base, { key: key.trim() }))) setKey('');
    keys.reload();
  };
  const remove = async (fp: string) => {
    await run(() => api('DELETE', `${base}/${encodeURIComponent(fp)}`));
    keys.reload();
  };
  return (
    <div>
      <div class="toolbar">
        <h2>SSH keys</h2>
        {isAdmin(props.session) ? (
          <input aria-label="User" value={user} onChange={(e) => setUser(e.currentTarget.value)} />
        ) : null}
      </div>
      <p class="hint">
        Keys let <code>{user}</code> in through the SSH gateway: <code>ssh vm@host -p 2222</code>.
      </p>
      <ErrorLine error={keys.error ?? error} />
      <ul class="plain">
        {(keys.data ?? []).map((k) => (
          <li>
            <code>{k.fingerprint}</code> <small>{k.line.split(' ').slice(2).join(' ')}</small>
            <button type="button" class="danger" onClick={() => remove(k.fingerprint)}>
              Remove
            </button>
          </li>
        ))}
      </ul>
      <form class="card form" onSubmit={add} noValidate>
        <Field label="Public key" error={errors.key}>
          <textarea name="key" rows={3} value={key} onInput={(e) => setKey(e.currentTarget.value)} placeholder="ssh-ed25519 AAAA… you@laptop" />
        </Field>
        <button class="primary" type="submit">
          Add key
        </button>
      </form>
    </div>
  );
}
