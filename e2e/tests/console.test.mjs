// The console in a real headless Chromium against `tripline demo`: the tests share one
// demo and run in order (the refusals first, while the org has no connection).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startDemo, createUser, launch, newPage, signIn, control, shot } from '../lib.mjs';

let demo;
let browser;

before(async () => {
  demo = await startDemo();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await demo?.stop();
});

/** Goes through steps 1 and 2 (All users unless a CSV is given) to step 3. */
async function wizardToStep3(page, name, csv) {
  await page.goto(demo.url + '/admin/connections/new');
  await page.fill('#name', name);
  await page.check('#completed');
  await page.click('button:has-text("Continue")');
  if (csv) {
    await page.check('#scope-users');
    await page.setInputFiles('#file', { name: 'users.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
  }
  await page.click('button:has-text("Continue")');
  await page.waitForSelector('#my_domain');
}

/** At sfsim's sign-in page: sign in as the service account, then click Allow or Deny. */
async function atSalesforce(page, button) {
  await page.click('button:has-text("Authorize in Salesforce")');
  await page.waitForSelector('#Login');
  await page.fill('#username', demo.serviceUser);
  await page.fill('#password', demo.servicePassword);
  await page.click('#Login');
  await page.waitForSelector(button);
  await page.click(button);
  await page.waitForLoadState();
}

test('a viewer sees the dashboard only; administration is refused', async () => {
  const password = createUser(demo, 'vera', 'viewer');
  const page = await newPage(browser);
  await signIn(page, demo, 'vera', password);
  assert.equal(await page.locator('nav[aria-label=Main] >> text=Data Connections').count(), 0);
  const response = await page.goto(demo.url + '/admin/connections');
  assert.equal(response.status(), 403);
  assert.match(await page.textContent('main'), /needs the Admin role/);
  await page.context().close();
});

test('the wizard gates Continue, and Deny at consent adds nothing and says so', async () => {
  const page = await newPage(browser);
  await signIn(page, demo);
  await page.goto(demo.url + '/admin/connections/new');
  assert.equal(await page.isDisabled('button:has-text("Continue")'), true, 'Continue waits for the checklist');
  await page.check('#completed');
  assert.equal(await page.isDisabled('button:has-text("Continue")'), false);
  await page.click('button:has-text("Continue")');
  assert.match(await page.textContent('#errors'), /Enter a display name/);
  await wizardToStep3(page, 'Denied org');
  await atSalesforce(page, '#oadeny');
  assert.match(page.url(), /\/oauth\/salesforce\/callback/);
  assert.match(await page.textContent('main'), /access was denied at the consent page/);
  assert.match(await page.textContent('main'), /Nothing was added/);
  await page.goto(demo.url + '/admin/connections');
  assert.match(await page.textContent('main'), /No data connections yet/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('a scope CSV with errors is refused by line, and users the org lacks are refused after sign-in', async () => {
  const page = await newPage(browser);
  await signIn(page, demo);
  await page.goto(demo.url + '/admin/connections/new');
  await page.fill('#name', 'CSV org');
  await page.check('#completed');
  await page.click('button:has-text("Continue")');
  await page.check('#scope-users');
  await page.setInputFiles('#file', { name: 'bad.csv', mimeType: 'text/csv', buffer: Buffer.from('Username\nalice@x.example\nnot a user\n"unclosed\n') });
  await page.click('button:has-text("Continue")');
  const errors = await page.textContent('#errors');
  assert.match(errors, /bad\.csv, line 3: "not a user" is not a Salesforce username/);
  assert.match(errors, /bad\.csv, line 4: a quoted field is not closed/);
  await shot(page, 'wizard-csv-errors');
  // A well-formed file naming someone the org does not have: refused once Salesforce is reached.
  await page.setInputFiles('#file', { name: 'users.csv', mimeType: 'text/csv', buffer: Buffer.from('Username\nnobody@nowhere.example\n') });
  await page.click('button:has-text("Continue")');
  await atSalesforce(page, '#oaapprove');
  assert.match(await page.textContent('#errors'), /users\.csv, line 2/);
  assert.match(await page.textContent('main'), /Nothing was added/);
  await page.goto(demo.url + '/admin/connections');
  assert.match(await page.textContent('main'), /No data connections yet/);
  await page.context().close();
});

test('a newcomer adds the org through the wizard and watches downloads arrive live', async () => {
  const page = await newPage(browser);
  await page.goto(demo.url + '/');
  assert.match(page.url(), /\/login\?next=/, 'the console needs a session');
  await shot(page, 'sign-in');
  await signIn(page, demo);
  await page.goto(demo.url + '/admin/connections');
  await shot(page, 'connections-empty');
  await page.click('main >> text=Add data connection >> nth=0');
  await page.fill('#name', 'Salesforce production');
  await shot(page, 'wizard-step-1');
  await page.check('#completed');
  await page.click('button:has-text("Continue")');
  await shot(page, 'wizard-step-2');
  await page.click('button:has-text("Continue")');
  assert.equal(await page.inputValue('#my_domain'), demo.org, 'the demo suggests its org');
  await shot(page, 'wizard-step-3');
  await atSalesforce(page, '#oaapprove');
  assert.match(await page.textContent('main'), /“Salesforce production” was added/);

  await page.goto(demo.url + '/admin/connections');
  const row = page.locator('tr[data-connection]');
  await row.locator('[data-status=monitoring]').waitFor({ timeout: 30_000 });
  // Downloads by people holding Export Reports appear without a reload.
  const exporters = (await control(demo, '/users')).filter((u) => u.can_export_reports && u.active && !u.frozen);
  for (const user of exporters.slice(0, 3)) {
    await control(demo, `/users/${user.id}/login`, {});
    const outcome = await control(demo, `/users/${user.id}/export`, { rows: 4242 });
    assert.equal(outcome.recorded, true);
  }
  await page.waitForFunction(() => document.querySelector('[data-field="events-today"]').textContent.trim() === '3', null, { timeout: 15_000 });
  assert.match(await row.locator('[data-field="last-event"]').textContent(), /just now/);
  await shot(page, 'connections');
  // The dashboard's counts follow within seconds.
  for (let i = 0; i < 20; i++) {
    await page.goto(demo.url + '/');
    if ((await page.textContent('.kpi >> nth=1')).includes('12,726')) break;
    await page.waitForTimeout(500);
  }
  assert.match(await page.textContent('.kpi >> nth=0'), /Report downloads\s*3/);
  assert.match(await page.textContent('.kpi >> nth=1'), /Rows exported\s*12,726/);
  assert.match(await page.textContent('figure.ranked >> nth=0'), /1 · 4,242 rows/);
  await shot(page, 'dashboard');
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('Forensic Search filters, pages, opens a download, exports and saves, all from the URL', async () => {
  const password = createUser(demo, 'ana', 'analyst');
  const page = await newPage(browser);
  await signIn(page, demo, 'ana', password);
  assert.equal(await page.locator('nav[aria-label=Main] >> text=Data Connections').count(), 0, 'an analyst is no admin');
  await page.click('nav >> text=Forensic Search');
  await page.selectOption('select[name=f] >> nth=0', 'rows');
  await page.selectOption('select[name=o] >> nth=0', 'above');
  await page.fill('input[name=v] >> nth=0', '4,000');
  await page.click('button:has-text("Search")');
  assert.match(await page.textContent('.results-bar [role=status]'), /1–3 of 3 downloads/);
  await shot(page, 'search');
  const url = page.url();
  // The URL alone reproduces the search (a colleague's fresh page).
  const other = await newPage(browser);
  await signIn(other, demo, 'ana', password);
  await other.goto(url);
  assert.match(await other.textContent('.results-bar [role=status]'), /1–3 of 3 downloads/);
  await other.context().close();
  // Oldest first through the time column's header.
  await page.click('#results th a:has-text("Time")');
  assert.match(page.url(), /dir=asc/);
  // The detail view: every field and the raw event of each chunk.
  await page.click('#results a:has-text("Details") >> nth=0');
  assert.match(await page.textContent('main'), /4,242 rows/);
  assert.match(await page.textContent('main'), /Chunk 1/);
  assert.match(await page.textContent('pre.raw'), /"EventIdentifier"/);
  await shot(page, 'download-detail');
  await page.goBack();
  // The whole result as CSV.
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('a:has-text("Export CSV")')]);
  const csv = await (await download.createReadStream()).toArray().then((chunks) => Buffer.concat(chunks).toString());
  const lines = csv.trim().split(/\r?\n/);
  assert.equal(lines.length, 4, csv);
  assert.match(lines[0], /^time,username,report_name,rows/);
  // The person behind a download, and back into the search.
  await page.click('nav >> text=Users');
  await page.click('#people a:has-text("Downloads")');
  const top = page.locator('#people tbody tr >> nth=0');
  assert.match(await top.textContent(), /4,242/);
  await top.locator('a >> nth=0').click();
  assert.match(await page.textContent('.kpis'), /Downloads \(all time\)\s*1/);
  assert.match(await page.textContent('main'), /Source IPs/);
  await shot(page, 'user');
  await page.click('a:has-text("Open in Forensic Search")');
  assert.match(await page.textContent('.results-bar [role=status]'), /1–1 of 1 downloads/);
  await page.goto(url);
  // Saved for the team under a name.
  await page.fill('#save-name', 'Large exports');
  await page.click('button:has-text("Save")');
  await page.click('summary:has-text("Saved searches (1)")');
  await page.click('details.saved a:has-text("Large exports")');
  assert.match(await page.textContent('.results-bar [role=status]'), /of 3 downloads/);
  assert.deepEqual(page.errors, []);
  await page.context().close();
});

test('an Error shows as a red row, a banner and a cause, and clears by itself', async () => {
  const page = await newPage(browser);
  await signIn(page, demo);
  await page.goto(demo.url + '/admin/connections');
  await page.locator('[data-status=monitoring]').waitFor();
  await control(demo, '/event-settings', { event: 'ReportEventStream', streaming: false });
  await page.locator('tr.row-error [data-status=error]').waitFor({ timeout: 20_000 });
  const banner = await page.textContent('#banner');
  assert.match(banner, /“Salesforce production” is in Error/);
  assert.match(banner, /Event Manager/);
  await shot(page, 'connections-error');
  await page.click('#banner >> text=View details');
  assert.match(await page.textContent('main'), /Source: Event Manager/);
  assert.match(await page.textContent('main'), /ReportEventStream/);
  await shot(page, 'connection-detail-error');
  await control(demo, '/event-settings', { event: 'ReportEventStream', streaming: true });
  // The panel reloads itself when the status changes.
  await page.locator('h1 [data-status=monitoring]').waitFor({ timeout: 20_000 });
  assert.equal((await page.textContent('#banner')).trim(), '');
  await page.context().close();
});

test('pause and resume from the detail panel take effect at once and are audited', async () => {
  const page = await newPage(browser);
  await signIn(page, demo);
  await page.goto(demo.url + '/admin/connections');
  await page.click('text=View details');
  await page.click('main a:has-text("Pause")');
  assert.match(await page.textContent('h1'), /Pause “Salesforce production”\?/);
  await page.click('button:has-text("Pause “Salesforce production”")');
  assert.match(await page.textContent('main'), /was paused/);
  await page.locator('h1 [data-status=paused]').waitFor();
  await page.click('main a:has-text("Resume")');
  await page.click('button:has-text("Resume “Salesforce production”")');
  await page.locator('h1 [data-status=monitoring]').waitFor({ timeout: 30_000 });
  await shot(page, 'connection-detail');
  await page.goto(demo.url + '/admin/audit');
  const audit = await page.textContent('main');
  for (const action of ['connection.add', 'connection.pause', 'connection.resume', 'console.sign-in']) {
    assert.match(audit, new RegExp(action.replace('.', '\\.')));
  }
  await shot(page, 'audit-log');
  // An API token is shown once, then only its name and use.
  await page.goto(demo.url + '/admin/tokens');
  await page.fill('#token-name', 'siem');
  await page.click('button:has-text("Create token")');
  const token = (await page.textContent('#secret')).trim();
  assert.match(token, /^tl_/);
  const api = await fetch(demo.url + '/api/v1/connections', { headers: { authorization: 'Bearer ' + token } });
  assert.equal(api.status, 200);
  await page.goto(demo.url + '/admin/accounts');
  await shot(page, 'accounts');
  await page.goto(demo.url + '/admin/settings');
  assert.match(await page.inputValue('#ranges'), /10\.20\.0\.0\/16/, 'the demo\'s corporate ranges');
  await shot(page, 'settings');
  // The node this demo runs on holds the connection and the alerting duty.
  await page.goto(demo.url + '/admin/nodes');
  const row = page.locator('#nodes tbody tr', { hasText: '(this node)' });
  await row.locator('text=Live').waitFor();
  await row.locator('text=Salesforce production').waitFor({ timeout: 15_000 });
  await row.locator('text=Alert evaluation and notifications').waitFor({ timeout: 15_000 });
  await shot(page, 'nodes');
  const nodes = await (await fetch(demo.url + '/api/v1/nodes', { headers: { authorization: 'Bearer ' + token } })).json();
  assert.equal(nodes.nodes.length, 1);
  assert.equal(nodes.nodes[0].live, true);
  assert.ok(nodes.nodes[0].leases.some((l) => l.key === 'duty:alerting'), JSON.stringify(nodes));
  await page.context().close();
});

test('the scope is edited from the panel, checked against the org, and exported as CSV', async () => {
  const page = await newPage(browser);
  await signIn(page, demo);
  await page.goto(demo.url + '/admin/connections');
  await page.click('text=View details');
  await page.click('main a:has-text("Edit scope")');
  await page.check('#scope-users');
  await page.setInputFiles('#file', { name: 'people.csv', mimeType: 'text/csv', buffer: Buffer.from('Username\nnobody@nowhere.example\n') });
  await page.click('button:has-text("Save scope")');
  assert.match(await page.textContent('#errors'), /people\.csv, line 2/);
  const exporter = (await control(demo, '/users')).find((u) => u.can_export_reports && u.active && !u.frozen);
  await page.check('#scope-users');
  await page.setInputFiles('#file', { name: 'people.csv', mimeType: 'text/csv', buffer: Buffer.from(`Username\n${exporter.username}\n`) });
  await page.click('button:has-text("Save scope")');
  assert.match(await page.textContent('main'), /given a new scope/);
  assert.match(await page.textContent('main'), /Specific users \(1 listed\)/);
  for (let i = 0; i < 30 && !/Monitored now\s*1 user with Export Reports/.test(await page.textContent('main')); i++) {
    await page.waitForTimeout(500);
    await page.reload();
  }
  assert.match(await page.textContent('main'), /Monitored now\s*1 user with Export Reports/);
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('a:has-text("Export users as CSV")')]);
  const csv = await (await download.createReadStream()).toArray().then((chunks) => Buffer.concat(chunks).toString());
  assert.equal(csv.trim().split(/\r?\n/).length, 2, csv);
  assert.match(csv, new RegExp(exporter.username.replace(/[.]/g, '\\.')));
  await page.context().close();
});
