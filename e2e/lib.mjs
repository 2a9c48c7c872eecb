// Shared by the browser tests: start `tripline demo` (the emulated org and the
// console, on free loopback ports), drive Debian's Chromium, reach sfsim's control API.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

const here = new URL('.', import.meta.url).pathname;
export const BIN = process.env.TRIPLINE_BIN || resolve(here, '../target/debug/tripline');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Runs `tripline demo` and reads what it printed: console URL, password, org, service user. */
export async function startDemo({ autoConnect = false, users = 40 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'tripline-e2e-'));
  const database = join(dir, 'demo.db');
  const args = ['demo', '--listen', '127.0.0.1:0', '--sfsim-http', '127.0.0.1:0', '--sfsim-grpc', '127.0.0.1:0',
    '--database', database, '--users', String(users), '--activity', '0'];
  if (autoConnect) args.push('--auto-connect');
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' } });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const printed = await new Promise((resolvePrinted, reject) => {
    const timer = setTimeout(() => reject(new Error('tripline demo did not start: ' + out + err)), 60_000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('Press Ctrl-C')) { clearTimeout(timer); resolvePrinted(out); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`tripline demo exited (${code}): ${out}${err}`)); });
  });
  const field = (label) => {
    const line = printed.split('\n').find((l) => l.trimStart().startsWith(label));
    if (!line) throw new Error(`no "${label}" in: ${printed}`);
    return line.slice(line.indexOf(':') + 1).trim().split(/\s+/);
  };
  const [url] = field('console');
  const [, , password] = field('sign in as');
  const [org] = field('emulated org');
  const [serviceUser, , servicePassword] = field('its service user');
  return {
    url, password, org, serviceUser, servicePassword, database,
    logs: () => err,
    async stop() {
      child.kill('SIGINT');
      await new Promise((r) => { child.once('exit', r); setTimeout(r, 10_000); });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A console account made from the terminal, as an admin would. */
export function createUser(demo, username, role) {
  return execFileSync(BIN, ['admin', 'create-user', '--database', demo.database, '--username', username, '--role', role],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/** A page at laptop size that records script errors (HTTP statuses are asserted where they matter). */
export async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) page.errors.push(m.text());
  });
  return page;
}

export async function signIn(page, demo, username = 'admin', password = demo.password) {
  await page.goto(demo.url + '/login');
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('button[type=submit]');
  await page.waitForLoadState();
}

/** sfsim's control API (tests and demos steer the emulated org with it). */
export async function control(demo, path, body) {
  const r = await fetch(demo.org + '/control/v1' + path, body === undefined ? {} : {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`control ${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

/** Saves a screenshot for docs/ when SCREENSHOTS names a folder. */
export async function shot(page, name) {
  const folder = process.env.SCREENSHOTS;
  if (!folder) return;
  mkdirSync(folder, { recursive: true });
  await page.waitForLoadState('networkidle').catch(() => {});
  // Chromium sometimes cannot capture a frame mid-paint: one retry.
  await page.screenshot({ path: join(folder, name + '.png') })
    .catch(() => page.waitForTimeout(300).then(() => page.screenshot({ path: join(folder, name + '.png') })));
}
