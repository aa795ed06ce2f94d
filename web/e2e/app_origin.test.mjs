// Apps cannot reach the console, end to end in Debian's Chromium (playwright-core). Started by
// dend/tests/apps_origin.rs, which installs an app whose page attacks Den and passes:
//   DEN_PORT   dend's HTTPS port (the console is https://box.test:<port>, the app
//              https://evil.box.test:<port>; Chromium maps both names to 127.0.0.1)
//   DEN_ADMIN  user:password of an admin
// An admin logs in to the console, opens the app through the old `/apps/evil/` address, logs in
// to the app (on the console's origin, whence a one-time code brings the login back), and the
// app's script then tries to read the session and its CSRF value, call the
// API with and without a CSRF value, plant a cookie for Den and open the events WebSocket.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set: run this through dend/tests/apps_origin.rs`);
  return v;
};
const PORT = env('DEN_PORT');
const [ADMIN, ADMIN_PW] = env('DEN_ADMIN').split(':');
const DEN = `https://box.test:${PORT}`;
const APP = `https://evil.box.test:${PORT}`;

let profile;
let context;

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'den-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      '--disable-background-networking',
      '--host-resolver-rules=MAP box.test 127.0.0.1, MAP *.box.test 127.0.0.1',
    ],
    headless: true,
    ignoreHTTPSErrors: true,
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** What the console's own page learns from Den about its session. */
async function consoleSession(page) {
  await page.goto(DEN + '/');
  return page.evaluate(async () => {
    const r = await fetch('/api/v1/session', { credentials: 'include' });
    return { status: r.status, body: await r.json().catch(() => null) };
  });
}

test("an app's page cannot act as the admin who opens it", { timeout: 120_000 }, async () => {
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(30_000);

  // The admin is logged in to the console.
  await page.goto(DEN + '/');
  const login = await page.evaluate(
    async ([user, password]) => {
      const r = await fetch('/api/v1/session', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ user, password }),
      });
      return { status: r.status, text: await r.text() };
    },
    [ADMIN, ADMIN_PW],
  );
  assert.equal(login.status, 200, login.text);
  const before = await consoleSession(page);
  assert.equal(before.body?.user, ADMIN, JSON.stringify(before));

  // The old address leads to the app's own origin, which sends the browser to log in on the
  // console's origin: the password is never typed where the app's scripts run.
  await page.goto(DEN + '/apps/evil/');
  assert.ok(page.url().startsWith(DEN + '/__den/app-login?app=evil.box.test'), page.url());
  await page.fill('input[name=user]', ADMIN);
  await page.fill('input[name=password]', ADMIN_PW);
  await page.click('input[type=submit]');
  await page.waitForFunction(() => window.denDone !== undefined, null, { timeout: 60_000 });
  assert.ok(page.url().startsWith(APP + '/'), page.url());
  const r = await page.evaluate(() => window.denDone);
  console.log('what the app tried:', JSON.stringify(r, null, 1));

  // The app's page works (its own content, after its own login)...
  assert.equal(await page.locator('h1').innerText(), 'evil app');
  // ...and nothing it tried reached Den.
  assert.match(r.read_session, /^blocked/, 'no cross-origin read of the session');
  assert.doesNotMatch(r.own_origin_session, /csrf/, "Den's API is not on the app's origin");
  assert.match(r.create_admin_with_csrf, /^blocked/, 'a preflighted call is refused');
  assert.match(r.events_ws, /^blocked/, 'the events WebSocket is refused');
  assert.doesNotMatch(r.own_login_page, /password/, 'no login form on the app origin: ' + r.own_login_page);

  // The console is unharmed: its session cookie is its own (the app could set one only for its
  // own host, and a `den_session` for the whole domain is no name Den reads), same user, no
  // user made.
  const cookies = await context.cookies(DEN);
  const sessions = cookies.filter((c) => c.name === '__Host-den_session');
  assert.equal(sessions.length, 1, JSON.stringify(cookies));
  assert.ok(sessions[0].value.startsWith('den_') && sessions[0].domain === 'box.test', JSON.stringify(sessions));
  const afterwards = await consoleSession(page);
  assert.equal(afterwards.body?.user, ADMIN, JSON.stringify(afterwards));
  const users = await page.evaluate(async () => (await fetch('/api/v1/users')).json());
  assert.ok(Array.isArray(users) && !users.some((u) => String(u.name).startsWith('mallory')), JSON.stringify(users));
});
