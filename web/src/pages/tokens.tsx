// API tokens: the user's own (all of them for admins), made with a name, an optional narrower
// role and lifetime; the secret is shown once.

import { useState } from 'preact/hooks';
import { api } from '../api';
import { ago } from '../format';
import { ErrorLine, Field, useAction, useLoad } from '../ui';

interface TokenRecord {
  id: string;
  user: string;
  name: string;
  scope: { role: string | null; vms: string[] | null };
  created: number;
  expires: number | null;
}

/** The tokens page. */
export function Tokens() {
  const tokens = useLoad(() => api<TokenRecord[]>('GET', '/tokens'), []);
  const [name, setName] = useState('');
  const [role, setRole] = useState('');
  const [days, setDays] = useState('');
  const [secret, setSecret] = useState<string | null>(null);
  const { errors, error, run } = useAction();
  const make = async (e: Event) => {
    e.preventDefault();
    const body: Record<string, unknown> = { name };
    if (role) body.role = role;
    if (days) body.expires_in = Math.round(Number(days) * 86400);
    const made = await run(async () => setSecret((await api<{ token: string }>('POST', '/tokens', body)).token));
    if (made) setName('');
    tokens.reload();
  };
  const revoke = async (id: string) => {
    await run(() => api('DELETE', `/tokens/${encodeURIComponent(id)}`));
    tokens.reload();
  };
  return (
    <div>
      <h2>API tokens</h2>
      <ErrorLine error={tokens.error ?? error} />
      {secret ? (
        <p class="secret">
          New token (shown this once): <code>{secret}</code>
        </p>
      ) : null}
      <table class="list">
        <thead>
          <tr>
            <th>Name</th>
            <th>User</th>
            <th>Role cap</th>
            <th>Created</th>
            <th>Expires</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {(tokens.data ?? []).map((t) => (
            <tr>
              <td>{t.name}</td>
              <td>{t.user}</td>
              <td>{t.scope.role ?? "user's"}</td>
              <td>{ago(t.created)}</td>
              <td>{t.expires ? new Date(t.expires * 1000).toLocaleString() : 'never'}</td>
              <td>
                <button type="button" class="danger" onClick={() => revoke(t.id)}>
                  Revoke
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <form class="card form" onSubmit={make} noValidate>
        <h3>New token</h3>
        <Field label="What it is for" error={errors.name}>
          <input name="token-name" value={name} onInput={(e) => setName(e.currentTarget.value)} placeholder="ci" />
        </Field>
        <div class="row">
          <Field label="Role cap" error={errors.role}>
            <select value={role} onChange={(e) => setRole(e.currentTarget.value)}>
              <option value="">the user's</option>
              <option value="viewer">viewer</option>
              <option value="operator">operator</option>
              <option value="admin">admin</option>
            </select>
          </Field>
          <Field label="Expires after (days)" error={errors.expires_in}>
            <input type="number" min="1" value={days} onInput={(e) => setDays(e.currentTarget.value)} placeholder="never" />
          </Field>
        </div>
        <button class="primary" type="submit">
          Make token
        </button>
      </form>
    </div>
  );
}
