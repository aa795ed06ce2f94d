// The serial console in the page: xterm.js over the console WebSocket, opened with a one-shot
// ticket. It fits its box (and tells the guest the new size), copies and pastes, and
// reconnects by itself with a fresh ticket when the connection drops.

import '@xterm/xterm/css/xterm.css';
import { FitAddon } from '@xterm/addon-fit';
import { Terminal } from '@xterm/xterm';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type Vm } from './api';
import { backoff } from './live';
import { message } from './ui';

/** The control message that tells dend the terminal's size. */
export function resizeMessage(cols: number, rows: number): string {
  return JSON.stringify({ resize: { cols, rows } });
}

type Status = 'connecting' | 'connected' | 'closed';

/** The console of a running VM. */
export function Console(props: { vm: Vm }) {
  const box = useRef<HTMLDivElement>(null);
  const term = useRef<Terminal | null>(null);
  const sock = useRef<WebSocket | null>(null);
  const [status, setStatus] = useState<Status>('connecting');
  const [error, setError] = useState<string | null>(null);
  const [attempt, setAttempt] = useState(0);
  const running = props.vm.state === 'running' || props.vm.state === 'paused';

  useEffect(() => {
    if (!box.current) return;
    const t = new Terminal({ cursorBlink: true, fontSize: 14, convertEol: false, scrollback: 5000 });
    const fit = new FitAddon();
    t.loadAddon(fit);
    t.open(box.current);
    fit.fit();
    term.current = t;
    const enc = new TextEncoder();
    const data = t.onData((d) => sock.current?.readyState === WebSocket.OPEN && sock.current.send(enc.encode(d)));
    const size = t.onResize(({ cols, rows }) => {
      box.current?.setAttribute('data-size', `${rows} ${cols}`);
      if (sock.current?.readyState === WebSocket.OPEN) sock.current.send(resizeMessage(cols, rows));
    });
    box.current.setAttribute('data-size', `${t.rows} ${t.cols}`);
    const obs = new ResizeObserver(() => fit.fit());
    obs.observe(box.current);
    t.focus();
    return () => {
      obs.disconnect();
      data.dispose();
      size.dispose();
      t.dispose();
      term.current = null;
    };
  }, []);

  useEffect(() => {
    if (!running) {
      setStatus('closed');
      return;
    }
    let cancelled = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const open = async () => {
      setStatus('connecting');
      try {
        const { url } = await api<{ url: string }>('POST', `/vms/${encodeURIComponent(props.vm.spec.name)}/console/ticket`);
        if (cancelled) return;
        const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
        const ws = new WebSocket(`${proto}//${location.host}${url}`);
        ws.binaryType = 'arraybuffer';
        sock.current = ws;
        ws.onopen = () => {
          setStatus('connected');
          setError(null);
          const t = term.current;
          if (t) ws.send(resizeMessage(t.cols, t.rows));
        };
        ws.onmessage = (m) => {
          if (m.data instanceof ArrayBuffer) term.current?.write(new Uint8Array(m.data));
          else if (typeof m.data === 'string') term.current?.write(m.data);
        };
        ws.onclose = () => {
          if (sock.current !== ws || cancelled) return;
          setStatus('closed');
          timer = setTimeout(() => setAttempt((a) => a + 1), backoff(attempt));
        };
      } catch (e) {
        if (cancelled) return;
        setError(message(e));
        setStatus('closed');
        timer = setTimeout(() => setAttempt((a) => a + 1), backoff(attempt + 2));
      }
    };
    void open();
    return () => {
      cancelled = true;
      clearTimeout(timer);
      sock.current?.close();
      sock.current = null;
    };
  }, [props.vm.spec.name, running, attempt]);

  const copy = async () => {
    const sel = term.current?.getSelection() ?? '';
    if (sel) await navigator.clipboard.writeText(sel).catch((e) => setError(message(e)));
  };
  const paste = async () => {
    try {
      const text = await navigator.clipboard.readText();
      term.current?.paste(text);
    } catch (e) {
      setError(message(e));
    }
    term.current?.focus();
  };
  return (
    <div class="console">
      <div class="console-bar">
        <span class={'conn ' + (status === 'connected' ? 'on' : 'off')} />
        <span class="console-status">{running ? status : 'the VM is not running'}</span>
        <button type="button" onClick={copy}>
          Copy
        </button>
        <button type="button" onClick={paste}>
          Paste
        </button>
        <button type="button" disabled={!running} onClick={() => setAttempt((a) => a + 1)}>
          Reconnect
        </button>
      </div>
      {error ? <p class="error-line">{error}</p> : null}
      <div class="term" ref={box} />
    </div>
  );
}
