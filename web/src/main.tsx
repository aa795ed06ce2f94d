// Entry point: find out whether a session exists, then show the login page or the console.

import './style.css';
import { render } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, setCsrf, whenUnauthorized } from './api';
import { Live } from './live';
import { Login } from './pages/login';
import { Shell } from './shell';
import type { Session } from './session';

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const live = useMemo(() => new Live(), []);

  const enter = (s: Session) => {
    setCsrf(s.csrf);
    setSession(s);
    void live.start();
  };
  const leave = () => {
    live.stop();
    setCsrf(null);
    setSession(null);
  };

  useEffect(() => {
    whenUnauthorized(leave);
    api<Session>('GET', '/session').then(enter, () => setSession(null));
  }, []);

  if (session === undefined) return <div class="splash">Den</div>;
  if (session === null) return <Login onLogin={enter} />;
  return <Shell session={session} live={live} onLogout={leave} />;
}

const root = document.getElementById('app');
if (root) render(<App />, root);
