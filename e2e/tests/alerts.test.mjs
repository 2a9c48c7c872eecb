// Alerts in a real headless Chromium against `tripline demo --auto-connect` (which
// ships the recommended rules, the quieter ones enabled, and two people on the
// departing employees list): a rule written and back-tested, a webhook channel tested
// against a receiver that checks the signature, an alert raised by an export and
// triaged, risk settings and watch lists.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { createHmac } from 'node:crypto';
import { startDemo, launch, newPage, signIn, control, shot } from '../lib.mjs';

let demo;
let browser;
let receiver;
const received = [];
const SECRET = 'e2e-signing-secret-0123456789';

before(async () => {
  demo = await startDemo({ autoConnect: true });
  browser = await launch();
  // A webhook receiver on loopback: it keeps only correctly signed requests.
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const timestamp = req.headers['x-tripline-timestamp'];
      const expected = 'sha256=' + createHmac('sha256', SECRET).update(`${timestamp}.${body}`).digest('hex');
      if (req.headers['x-tripline-signature'] !== expected) { res.writeHead(401).end(); return; }
      received.push({ key: req.headers['idempotency-key'], body: JSON.parse(body) });
      res.writeHead(204).end();
    });
  });
  await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
});

after(async () => {
  receiver?.close();
  await browser?.close();
  await demo?.stop();
});

async function exporters() {
  return (await control(demo, '/users')).filter((u) => u.can_export_reports && u.active && !u.frozen && u.username);
}

async function waitFor(what, check, timeout = 15_000) {
  const until = Date.now() + timeout;
  while (Date.now() < until) {
    const value = await check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('timed out waiting for ' + what);
}

test('a webhook channel is added and tested against a receiver that checks the signature', async () => {
  const page = await newPage(browser);
  await signIn(page, demo);
  await page.goto(demo.url + '/channels');
  assert.match(await page.textContent('main'), /No channels yet/);
  await page.click('main >> text=Add webhook');
  await page.fill('#name', 'SOC webhook');
  await page.fill('#url', 'ftp://127.0.0.1/hook');
  await page.fill('#secret', SECRET);
  await page.click('button:has-text("Save channel")');
  assert.match(await page.textContent('#errors'), /must be an http\(s\) URL/);
  await page.fill('#url', `http://127.0.0.1:${receiver.address().port}/hook`);
  assert.equal(await page.inputValue('#name'), 'SOC webhook', 'nothing typed is lost');
  await page.fill('#secret', SECRET);
  await shot(page, 'channel-webhook');
  await page.click('button:has-text("Save channel")');
  await page.click('tr[data-channel="SOC webhook"] >> text=Send test');
  assert.match(await page.textContent('#test-result'), /A test message was sent/);
  assert.equal(received.length, 1);
  assert.equal(received[0].body.type, 'tripline.test');

  // The message template: a misspelled placeholder is refused, a good one previewed and saved.
  await page.click('main >> text=Message template');
  await page.fill('#subject', 'Tripline: {usr} exported {rows} rows');
  await page.click('button:has-text("Preview")');
  assert.match(await page.textContent('#errors'), /\{usr\} is not a placeholder/);
  assert.equal(await page.inputValue('#subject'), 'Tripline: {usr} exported {rows} rows', 'nothing typed is lost');
  await page.fill('#subject', 'Tripline: {user} exported {rows} rows');
  await page.click('button:has-text("Preview")');
  assert.match(await page.textContent('#preview'), /Tripline: jane\.doe@example\.com exported 48,210 rows/);
  await shot(page, 'message-template');
  await page.click('button:has-text("Save template")');
  assert.match(await page.textContent('main'), /Messages sent from now on use this template/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a rule is written, back-tested on stored downloads, saved, enabled, and its alert is sent', async () => {
  const people = await exporters();
  const ann = people[5];
  // Stored before the rule exists: the back-test sees it, the rule will not alert on it.
  await control(demo, `/users/${ann.id}/export`, { rows: 77_000, file_format: 'Excel' });
  const page = await newPage(browser);
  await signIn(page, demo);
  await page.goto(demo.url + '/rules');
  assert.ok(await page.locator('tr[data-rule="Departing employee exports"] >> text=Enabled').count());
  await shot(page, 'rules');
  await page.click('main >> text=New rule');
  await page.fill('#name', 'Very large exports');
  await page.fill('#min_rows', '50000');
  await page.check('text=SOC webhook');
  await waitFor('the export to be stored', async () => {
    await page.click('button:has-text("Back-test")');
    return /1 alert from 1 matching download/.test(await page.textContent('#backtest').catch(() => ''));
  });
  assert.match(await page.textContent('#backtest-alerts'), new RegExp(ann.username.replace('.', '\\.')));
  assert.equal(await page.inputValue('#min_rows'), '50000', 'the form keeps what was typed');
  await shot(page, 'rule-backtest');
  await page.click('button:has-text("Save rule")');
  await page.click('tr[data-rule="Very large exports"] >> button:has-text("Enable")');
  assert.ok(await page.locator('tr[data-rule="Very large exports"] >> text=Enabled').count());

  await control(demo, `/users/${ann.id}/export`, { rows: 88_000 });
  const message = await waitFor('the alert at the webhook', () => received.find((r) => r.body.type === 'tripline.alert'));
  assert.equal(message.body.alert.rule.name, 'Very large exports');
  assert.equal(message.body.alert.rows, 88_000, 'only the export after enabling');
  assert.match(message.body.alert.url, /\/alerts\//);

  await page.goto(demo.url + '/alerts');
  const row = page.locator('#alerts tr', { hasText: 'Very large exports' });
  await row.locator('a >> nth=0').click();
  assert.match(await page.textContent('h1'), /Very large exports/);
  assert.match(await page.textContent('#alert-events'), /88,000/);
  await page.selectOption('#state', 'in-progress');
  await page.selectOption('#assignee', 'admin');
  await page.fill('#note', 'Asked the manager; <b>not</b> expected.');
  await page.click('#triage button[type=submit]');
  assert.match(await page.textContent('.page-head'), /In progress/);
  assert.match(await page.textContent('#notes'), /<b>not<\/b> expected/, 'a note is text, not markup');
  await shot(page, 'alert');
  await page.click('text=Open in Forensic Search');
  await page.waitForSelector('#results');
  assert.match(await page.textContent('.results-bar'), /1–1 of 1/);
  await page.goto(demo.url + '/alerts');
  await shot(page, 'alerts');
  // Most severe first: the badges never rise down the list.
  await page.selectOption('#f-sort', 'severity');
  await page.click('form.filters button[type=submit]');
  await page.waitForURL(/sort=severity/);
  const rank = ['no-risk', 'low', 'moderate', 'high', 'critical'];
  const badges = await page.locator('#alerts td .sev').evaluateAll((spans) =>
    spans.map((s) => [...s.classList].find((c) => c.startsWith('sev-')).slice(4)));
  assert.ok(badges.length > 1, 'several alerts to order');
  assert.deepEqual(badges.map((b) => rank.indexOf(b)), badges.map((b) => rank.indexOf(b)).sort((a, b) => b - a));
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a departing employee export raises an alert; risks no rule covers are listed', async () => {
  const page = await newPage(browser);
  await signIn(page, demo);
  await page.goto(demo.url + '/watchlists');
  const departing = (await page.locator('table[data-list=departing] tbody tr td:first-child').allTextContents()).map((t) => t.trim());
  assert.equal(departing.length, 2);
  await shot(page, 'watchlists');
  const people = await exporters();
  const leaver = people.find((u) => u.username.toLowerCase() === departing[0]);
  await page.goto(demo.url + '/alerts');
  const before = Number(await page.getAttribute('#alerts-new', 'data-newest'));
  await control(demo, `/users/${leaver.id}/export`, { rows: 12 });
  // Live: the list says new alerts were raised, and the navigation counts open ones.
  await page.waitForSelector('#alerts-new:not([hidden])', { timeout: 15_000 });
  assert.ok(await page.isVisible('#open-alerts'));
  await page.click('#alerts-new a');
  assert.ok(Number(await page.getAttribute('#alerts-new', 'data-newest')) > before);
  await waitFor('the departing employee alert', async () => {
    await page.reload();
    return (await page.locator('#alerts tr', { hasText: 'Departing employee exports' }).count()) > 0;
  });
  // A critical download that no enabled rule matches.
  await page.goto(demo.url + '/rules/uncovered');
  await shot(page, 'risks-not-covered');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('risk settings are checked and saved, watch list files are read by line', async () => {
  const page = await newPage(browser);
  await signIn(page, demo);
  await page.goto(demo.url + '/risk');
  await shot(page, 'risk-settings');
  await page.fill('#time_zone', 'Mars/Olympus');
  await page.fill('#score-off-hours', '4');
  await page.click('button:has-text("Save risk settings")');
  assert.match(await page.textContent('#errors'), /not a time zone/);
  assert.equal(await page.inputValue('#score-off-hours'), '4', 'nothing typed is lost');
  await page.fill('#time_zone', 'Europe/Berlin');
  await page.click('button:has-text("Save risk settings")');
  assert.match(await page.textContent('main'), /Saved\. Downloads stored from now on/);

  await page.goto(demo.url + '/watchlists');
  await page.selectOption('#u-kind', 'contractor');
  await page.setInputFiles('#u-file', { name: 'contractors.csv', mimeType: 'text/csv',
    buffer: Buffer.from('username,end\ncon.one@example.com,2027-01-31\nnot a username\n') });
  await page.click('#watch-upload button');
  assert.match(await page.textContent('#errors'), /contractors\.csv, line 3: "not a username" is not a Salesforce username/);
  await page.setInputFiles('#u-file', { name: 'contractors.csv', mimeType: 'text/csv',
    buffer: Buffer.from('con.one@example.com,2027-01-31,agency\ncon.two@example.com\n') });
  await page.click('#watch-upload button');
  assert.match(await page.textContent('main'), /2 people added/);
  assert.equal(await page.locator('table[data-list=contractor] tbody tr').count(), 2);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});
