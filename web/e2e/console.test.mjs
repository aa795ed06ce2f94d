// The web console end to end: Debian's Chromium driven by playwright-core against a real dend
// with real QEMU guests. Started by dend/tests/web_console.rs, which sets up dend and passes:
//   DEN_URL          https://127.0.0.1:<port>
//   DEN_ADMIN        user:password of an admin
//   DEN_VIEWER       user:password of a viewer
//   DEN_VIEWED_VM    a VM the viewer can see
//   DEN_KERNEL       the kernel release the guest's `uname -a` must show
//   DEN_SCREENSHOTS  where to save a screenshot of each page (desktop and phone)
// Bench mode (DEN_BENCH=1) prints numbers instead of saving screenshots.

import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set: run this through dend/tests/web_console.rs`);
  return v;
};
const URL = env('DEN_URL');
const [ADMIN, ADMIN_PW] = env('DEN_ADMIN').split(':');
const [VIEWER, VIEWER_PW] = env('DEN_VIEWER').split(':');
const VIEWED = env('DEN_VIEWED_VM');
const KERNEL = env('DEN_KERNEL');
const SHOTS = env('DEN_SCREENSHOTS');
const VM = 'webvm1';
const LONG = 240_000;

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let profile;
let browser;
let desktop;
let phone;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), 'den-chromium-'));
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    args: FLAGS,
    headless: true,
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 800 },
  });
  desktop = browser.pages()[0] ?? (await browser.newPage());
  phone = await browser.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  for (const p of [desktop, phone]) p.setDefaultTimeout(30_000);
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function shot(page, name) {
  const kind = page === phone ? 'phone' : 'desktop';
  await page.screenshot({ path: join(SHOTS, `${name}-${kind}.png`), fullPage: true });
}

async function login(page, user, password) {
  await browser.clearCookies();
  await page.goto(URL + '/');
  await page.fill('input[name=user]', user);
  await page.fill('input[name=password]', password);
  await page.click('button[type=submit]');
}

async function logout(page) {
  await page.click('text=Log out');
  await page.waitForSelector('input[name=password]');
}

/** Types into the console and waits until `want` appears in the terminal's text. */
async function consoleRun(page, line, want) {
  await page.click('.term');
  await page.keyboard.type(line);
  await page.keyboard.press('Enter');
  await page.waitForFunction(
    (w) => (document.querySelector('.xterm-rows')?.textContent ?? '').includes(w),
    want,
    { timeout: 60_000 },
  );
}

test('a wrong password shows an error', async () => {
  await login(desktop, ADMIN, 'not-the-password');
  const err = desktop.locator('.error-line');
  await err.waitFor();
  assert.match(await err.innerText(), /wrong user name or password/);
  await shot(desktop, '01-login-error');
  await login(phone, ADMIN, 'not-the-password');
  await phone.locator('.error-line').waitFor();
  await shot(phone, '01-login-error');
});

test('an admin creates a VM, sees it run, uses its console, stops and deletes it', { timeout: 900_000 }, async () => {
  const page = desktop;
  await login(page, ADMIN, ADMIN_PW);
  await page.waitForSelector('text=Dashboard');
  await page.waitForSelector('.tile');
  await shot(page, '02-dashboard');

  // The create form: the API's limits are checked at the field, then a good VM is made.
  await page.click('nav >> text=Create VM');
  await page.waitForSelector('select[name=image] option[value=base]', { state: 'attached' });
  await page.fill('input[name=name]', 'Bad_Name');
  await page.fill('input[name=cpus]', '999');
  await page.click('button[type=submit]');
  await page.waitForSelector('.field.invalid');
  const errors = await page.locator('.field .error').allInnerTexts();
  assert.ok(errors.some((e) => /a-z, 0-9/.test(e)), `a name error in ${errors}`);
  assert.ok(errors.some((e) => /vCPUs/.test(e)), `a vCPU error in ${errors}`);
  await shot(page, '03-create-invalid');
  // dend's own check (a disk smaller than the image's) comes back at its field.
  await page.fill('input[name=name]', VM);
  await page.fill('input[name=cpus]', '1');
  await page.fill('input[name=disk]', '64');
  await page.click('button[type=submit]');
  const diskError = page.locator('.field.invalid:has(input[name=disk]) .error');
  await diskError.waitFor();
  assert.match(await diskError.innerText(), /smaller than image/);
  await shot(page, '03-create-api-error');
  await page.fill('input[name=disk]', '');
  await page.fill('input[name=memory]', '256');
  await page.selectOption('select[name=image]', 'base');
  await page.selectOption('select[name=network]', '');
  await shot(page, '04-create-filled');

  // From here on the page must never reload: state changes arrive over the events stream.
  await page.evaluate(() => {
    window.__noReload = true;
  });
  await page.click('button[type=submit]');
  await page.waitForURL(new RegExp(`#/vms/${VM}$`));
  await page.waitForSelector(`h2 .badge.state-running`, { timeout: LONG });
  assert.equal(await page.evaluate(() => window.__noReload), true, 'the page was not reloaded');
  await shot(page, '05-vm-running');

  // The VM list shows it running, and searches.
  await page.click('nav >> text=VMs');
  await page.waitForSelector(`tr[data-vm=${VM}] .state-running`);
  await page.fill('input[type=search]', 'no-such-vm');
  await page.waitForSelector('text=No VM matches.');
  await page.fill('input[type=search]', VM);
  await page.waitForSelector(`tr[data-vm=${VM}]`);
  await shot(page, '06-vm-list');

  // The console: type `uname -a`, read the answer; then the guest knows the terminal's size.
  await page.click(`tr[data-vm=${VM}] a`);
  await page.click('[role=tab] >> text=Console');
  await page.waitForSelector('.console-status >> text=connected', { timeout: 60_000 });
  await page.waitForSelector('.xterm-rows');
  await consoleRun(page, '', '');
  await consoleRun(page, 'uname -a', KERNEL);
  const text = await page.locator('.xterm-rows').textContent();
  assert.ok(text.includes('Linux') && text.includes(KERNEL), `uname -a answered in the console: ${text}`);
  const size = await page.getAttribute('.term', 'data-size');
  await consoleRun(page, 'stty size', size);
  await shot(page, '07-console');
  // Paste from the clipboard, and a reconnect by hand: the console keeps working.
  await browser.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: URL });
  await page.evaluate(() => navigator.clipboard.writeText('echo pasted-$((40+2))'));
  await page.click('.console-bar >> text=Paste');
  await page.waitForFunction(() => (document.querySelector('.xterm-rows')?.textContent ?? '').includes('pasted-$((40+2))'));
  await page.click('.term');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => (document.querySelector('.xterm-rows')?.textContent ?? '').includes('pasted-42'));
  await page.click('.console-bar >> text=Reconnect');
  await page.waitForSelector('.console-status >> text=connected');
  await consoleRun(page, 'echo again-$((1+1))', 'again-2');
  // Resize the page: the guest learns the new size.
  await page.setViewportSize({ width: 900, height: 700 });
  await page.waitForFunction((old) => document.querySelector('.term')?.getAttribute('data-size') !== old, size);
  const resized = await page.getAttribute('.term', 'data-size');
  await page.waitForTimeout(500);
  await consoleRun(page, 'clear; stty size', resized);
  await page.setViewportSize({ width: 1280, height: 800 });

  // Tasks with their logs, and graphs.
  await page.click('[role=tab] >> text=Tasks');
  await page.waitForSelector('.tasks li');
  await page.click('.tasks li button');
  await page.waitForSelector('pre.log');
  await shot(page, '08-tasks');
  await page.click('[role=tab] >> text=Graphs');
  await page.waitForSelector('figure.chart path.line[d^=M]', { timeout: 30_000 });
  await shot(page, '09-graphs');

  // Stop (after confirming), then delete (after confirming).
  await page.click('.actions >> text=Stop');
  await page.waitForSelector('[role=dialog]');
  await shot(page, '10-confirm-stop');
  await page.click('[role=dialog] button.danger');
  await page.waitForSelector('h2 .badge.state-stopped', { timeout: LONG });
  await page.click('.actions >> text=Delete');
  await page.waitForSelector('[role=dialog] >> text=cannot be undone');
  await page.click('[role=dialog] button.danger');
  await page.waitForURL(/#\/vms$/);
  await page.waitForFunction((vm) => !document.querySelector(`tr[data-vm=${vm}]`), VM, { timeout: LONG });
  assert.equal(await page.evaluate(() => window.__noReload), true, 'still no reload');

  // Access to one VM, given on the users page.
  await page.click('nav >> text=Users');
  await page.waitForSelector('select[name=grant-vm] option[value=' + VIEWED + ']', { state: 'attached' });
  await page.selectOption('select[name=grant-user]', VIEWER);
  await page.selectOption('select[name=grant-vm]', VIEWED);
  await page.selectOption('select[name=grant-role]', 'viewer');
  await page.click('text=Set access');
  await page.waitForSelector(`text=viewer on ${VIEWED}`);

  // The admin pages.
  for (const [nav, name, sel] of [
    ['Users', '11-users', 'table.list tbody tr'],
    ['API tokens', '12-tokens', 'table.list'],
    ['SSH keys', '13-keys', 'form textarea[name=key]'],
  ]) {
    await page.click(`nav >> text=${nav}`);
    await page.waitForSelector(sel);
    await shot(page, name);
  }
  await logout(page);
});

test('a viewer sees VMs but no destructive buttons', async () => {
  const page = desktop;
  await login(page, VIEWER, VIEWER_PW);
  await page.waitForSelector('text=Dashboard');
  assert.equal(await page.locator('nav >> text=Create VM').count(), 0, 'no Create VM for viewers');
  assert.equal(await page.locator('nav >> text=Users').count(), 0, 'no Users page for viewers');
  await page.click('nav >> text=VMs');
  await page.click(`tr[data-vm=${VIEWED}] a`);
  await page.waitForSelector('.summary');
  for (const label of ['Delete', 'Stop', 'Start', 'Reboot', 'Snapshot', 'Clone']) {
    assert.equal(await page.locator(`.actions >> text=${label}`).count(), 0, `no ${label} button`);
  }
  assert.equal(await page.locator('[role=tab] >> text=Console').count(), 0, 'no console for viewers');
  await shot(page, '14-viewer-vm');
  await logout(page);
});

test('every page on a phone', async () => {
  const page = phone;
  await login(page, ADMIN, ADMIN_PW);
  await page.waitForSelector('.tile');
  await shot(page, '02-dashboard');
  await page.click('nav >> text=VMs');
  await page.waitForSelector(`tr[data-vm=${VIEWED}]`);
  await shot(page, '06-vm-list');
  await page.click(`tr[data-vm=${VIEWED}] a`);
  await page.waitForSelector('.summary');
  await shot(page, '05-vm-page');
  await page.click('nav >> text=Create VM');
  await page.waitForSelector('input[name=name]');
  await shot(page, '04-create');
  await page.click('nav >> text=Users');
  await page.waitForSelector('table.list tbody tr');
  await shot(page, '11-users');
  await logout(page);
});
