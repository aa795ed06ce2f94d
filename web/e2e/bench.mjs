// Web console numbers, measured in Debian's Chromium (run by tests/src/bin/web-bench.rs, which
// starts dend with many VMs and one running guest). Prints one JSON object:
//   js_initial_gzip, js_console_gzip: bytes of JavaScript and CSS the browser fetched (gzip)
//   list_ms: navigation start to the VM list rendered and usable (median of cold loads)
//   api_ms: the same page's GET /api/v1/vms round trip (the floor for list_ms)
//   echo_xterm_ms, echo_raw_ms: a keystroke typed into the console until its echo is shown,
//     through xterm.js, and the same over a bare WebSocket without a terminal (medians)
// Environment: DEN_URL, DEN_ADMIN (user:password), DEN_VM (a running VM), DEN_VMS (how many
// VMs the list must show), DEN_RUNS.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const URL = process.env.DEN_URL;
const [USER, PASSWORD] = (process.env.DEN_ADMIN ?? ':').split(':');
const VM = process.env.DEN_VM;
const VMS = Number(process.env.DEN_VMS ?? '1');
const RUNS = Number(process.env.DEN_RUNS ?? '10');

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
const p95 = (v) => [...v].sort((a, b) => a - b)[Math.min(v.length - 1, Math.floor(v.length * 0.95))];

const profile = mkdtempSync(join(tmpdir(), 'den-chromium-bench-'));
const ctx = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  headless: true,
  ignoreHTTPSErrors: true,
  viewport: { width: 1280, height: 800 },
});
const out = {};
try {
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  // What a first visit downloads: every script and stylesheet, as sent (gzip).
  const sizes = new Map();
  page.on('response', async (r) => {
    const url = r.url();
    if (!/\.(js|css)$/.test(url)) return;
    const len = Number((await r.allHeaders())['content-length'] ?? 0);
    sizes.set(url, len);
  });
  await page.goto(URL + '/');
  await page.fill('input[name=user]', USER);
  await page.fill('input[name=password]', PASSWORD);
  await page.click('button[type=submit]');
  await page.waitForSelector('.tile');
  out.js_initial_gzip = [...sizes.values()].reduce((a, b) => a + b, 0);
  await page.goto(`${URL}/#/vms/${VM}/console`);
  await page.waitForSelector('.console-status >> text=connected', { timeout: 60_000 });
  out.js_console_gzip = [...sizes.values()].reduce((a, b) => a + b, 0) - out.js_initial_gzip;

  // Keystroke echo through xterm.js: type one character, wait until the terminal shows it.
  await page.click('.term');
  await page.keyboard.press('Enter');
  await page.waitForTimeout(1000);
  const count = () => page.evaluate(() => (document.querySelector('.xterm-rows')?.textContent ?? '').split('q').length);
  const xterm = [];
  for (let i = 0; i < RUNS * 2; i++) {
    const before = await count();
    const t = performance.now();
    await page.keyboard.type('q');
    await page.waitForFunction((n) => (document.querySelector('.xterm-rows')?.textContent ?? '').split('q').length > n, before, { polling: 'raf' });
    xterm.push(performance.now() - t);
  }
  await page.keyboard.press('Control+U');
  out.echo_xterm_ms = median(xterm);
  out.echo_xterm_p95_ms = p95(xterm);

  // The same over a bare WebSocket (the serial console allows one client: leave the page first).
  await page.goto(`${URL}/#/vms`);
  await page.waitForTimeout(500);
  await page.evaluate(async (vm) => {
    const csrf = (await (await fetch('/api/v1/session')).json()).csrf;
    const t = await (await fetch(`/api/v1/vms/${vm}/console/ticket`, { method: 'POST', headers: { 'X-CSRF-Token': csrf } })).json();
    const ws = new WebSocket(`wss://${location.host}${t.url}`);
    ws.binaryType = 'arraybuffer';
    let waiting = null;
    ws.onmessage = (m) => {
      const s = new TextDecoder().decode(m.data);
      if (waiting && s.includes(waiting.ch)) {
        waiting.done();
        waiting = null;
      }
    };
    await new Promise((r) => (ws.onopen = r));
    window.__rawEcho = (ch) =>
      new Promise((done) => {
        waiting = { ch, done };
        ws.send(new TextEncoder().encode(ch));
      });
    window.__rawClose = () => ws.send(new TextEncoder().encode('\u0015'));
  }, VM);
  await page.waitForTimeout(500);
  const raw = [];
  for (let i = 0; i < RUNS * 2; i++) {
    const t = performance.now();
    await page.evaluate(() => window.__rawEcho('q'));
    raw.push(performance.now() - t);
  }
  await page.evaluate(() => window.__rawClose());
  out.echo_raw_ms = median(raw);
  out.echo_raw_p95_ms = p95(raw);

  // Navigation to a usable VM list: a fresh load of the list page (session cookie kept), until
  // every VM row is there and the search box takes input; the page's own clock.
  const list = [];
  const api = [];
  for (let i = 0; i < RUNS; i++) {
    const fresh = await ctx.newPage();
    await fresh.goto(`${URL}/#/vms`);
    const ms = await fresh.evaluate(async (n) => {
      while (document.querySelectorAll('tr[data-vm]').length < n || !document.querySelector('input[type=search]'))
        await new Promise((r) => requestAnimationFrame(r));
      return performance.now();
    }, VMS);
    list.push(ms);
    api.push(
      await fresh.evaluate(async () => {
        const t = performance.now();
        await (await fetch('/api/v1/vms')).json();
        return performance.now() - t;
      }),
    );
    await fresh.close();
  }
  out.list_ms = median(list);
  out.list_p95_ms = p95(list);
  out.api_ms = median(api);
  out.vms = VMS;
} finally {
  await ctx.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
