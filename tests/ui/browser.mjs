// Drives the cluster page /ui in Debian's chromium, for tests/ui.rs (run it through that test).
//
//   node tests/ui/browser.mjs <url of /ui> <pid of the node to kill> <screenshot path>
//
// Where things come from:
//   playwright-core  $MESHD_TEST_DEPS/node_modules (default /opt/meshd-test-deps/node_modules),
//                    where `bash .ci/install-test-deps` installs the pinned version; it never
//                    downloads a browser of its own.
//   chromium         $CHROMIUM (default /usr/bin/chromium, Debian's package).
//
// Steps, each bounded: the page lists 3 members ALIVE; the given node is SIGKILLed (by PID);
// its row turns DOWN without a reload and the timeline shows the change; vitals and the leader
// badge show; a store's entries open; a screenshot is written. With the event stream refused,
// the page says it is reconnecting, and stops saying so once the stream is served. Then /ui?synthetic=1000: the
// first draw's time, 1,000 members counted, one page of rows, sorting, filtering and paging.
// Prints one JSON line on success, {"render_ms_1000": <ms>, "screenshot": "<path>"}; any
// failure goes to stderr with a non-zero exit.

import { createRequire } from 'node:module';
import path from 'node:path';

const DEPS_DIR = process.env.MESHD_TEST_DEPS ?? '/opt/meshd-test-deps';
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
/** Longest any one step may take. */
const STEP_MS = 30000;
/** Rows per page of the member table (PAGE_SIZE in src/api/ui/table.js). */
const PAGE_SIZE = 100;
const SYNTHETIC = 1000;

// Resolve playwright-core as if required from a file in DEPS_DIR: its node_modules is searched.
const require = createRequire(path.join(DEPS_DIR, 'package.json'));
const { chromium } = require('playwright-core');

const [url, pidText, screenshot] = process.argv.slice(2);
const victimPid = Number.parseInt(pidText ?? '', 10);
if (!url || !Number.isInteger(victimPid) || victimPid <= 1 || !screenshot) {
  console.error('usage: node browser.mjs <url of /ui> <pid to kill> <screenshot path>');
  process.exit(2);
}

/** Runs `step`, naming it in the error if it fails. */
async function step(name, body) {
  try {
    return await body();
  } catch (error) {
    throw new Error(`${name}: ${error.message}`);
  }
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

/** Every problem the page itself reports (uncaught errors, console errors, CSP refusals). */
function watchProblems(page) {
  const problems = [];
  page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  return problems;
}

async function livePage(browser) {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const problems = watchProblems(page);
  await step('open /ui', () => page.goto(url, { timeout: STEP_MS }));

  await step('3 members ALIVE', () => page.waitForFunction(
    () => document.querySelectorAll('tr[data-member] td[data-state="ALIVE"]').length === 3,
    null, { timeout: STEP_MS }));
  await step('live indicator', async () => {
    check(await page.locator('#reconnecting').isHidden(), '#reconnecting shows while the stream is up');
    check(await page.textContent('#count-ALIVE') === '3', 'the ALIVE count is not 3');
  });
  const victim = await page.$$eval('tr[data-member]', (rows) => rows.map((r) => r.dataset.member).at(-1));
  check(victim === 'ui3', `the last row is ${victim}, not ui3`);

  // A marker on window survives only if the page is not reloaded.
  await page.evaluate(() => { window.meshdNoReload = true; });
  process.kill(victimPid, 'SIGKILL');
  await step('ui3 DOWN without a reload', () => page.waitForSelector(
    'tr[data-member="ui3"] td[data-state="DOWN"]', { timeout: STEP_MS }));
  check(await page.evaluate(() => window.meshdNoReload === true), 'the page was reloaded');
  await step('timeline entry for ui3', async () => {
    const entry = page.locator('#timeline li[data-member="ui3"][data-state="DOWN"]');
    await entry.first().waitFor({ timeout: STEP_MS });
    const text = await entry.first().textContent();
    check(text.includes('SUSPECTED') || text.includes('ALIVE'), `no previous state in "${text}"`);
  });

  await step('vitals of ui1 from the status poll', () => page.waitForFunction(
    () => document.querySelector('tr[data-member="ui1"] td[data-col="rss"]')?.textContent.includes('iB'),
    null, { timeout: STEP_MS }));
  await step('leader badge', () => page.waitForSelector(
    'tr[data-member] [data-leader]', { timeout: STEP_MS }));
  await step('the entries of store nodes', async () => {
    await page.click('#store-rows button[data-store="nodes"]', { timeout: STEP_MS });
    await page.waitForSelector('#entry-rows tr[data-key="ui1"]', { timeout: STEP_MS });
  });

  await page.screenshot({ path: screenshot, fullPage: true });
  check(problems.length === 0, `the page reported problems:\n${problems.join('\n')}`);
  await page.close();
}

/**
 * The page while the node refuses its event stream (as a proxy or a restarting node would):
 * the indicator shows, the status poll keeps the rows, and once the stream is served again
 * the page opens a new one and the indicator goes. (Going offline does not end a stream that
 * is already open in chromium, so the refusal is made from the start.)
 */
async function reconnectPage(browser) {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const uncaught = [];
  page.on('pageerror', (error) => uncaught.push(error.message));
  await page.route('**/ha/events', (route) => route.fulfill({
    status: 503, contentType: 'application/json', body: '{"error":"refused by the test"}',
  }));
  await step('open /ui with the stream refused', () => page.goto(url, { timeout: STEP_MS }));
  await step('reconnecting indicator shows', () => page.locator('#reconnecting')
    .waitFor({ state: 'visible', timeout: STEP_MS }));
  await step('rows from the status poll', () => page.waitForSelector(
    'tr[data-member="ui3"] td[data-state="DOWN"]', { timeout: STEP_MS }));
  await page.unroute('**/ha/events');
  await step('reconnecting indicator goes', () => page.locator('#reconnecting')
    .waitFor({ state: 'hidden', timeout: STEP_MS }));
  check(uncaught.length === 0, `uncaught errors:\n${uncaught.join('\n')}`);
  await page.close();
}

/** The synthetic page: its first draw's time, after checking what it drew. */
async function syntheticPage(browser) {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const problems = watchProblems(page);
  const target = new URL(url);
  target.searchParams.set('synthetic', String(SYNTHETIC));
  await step('open /ui?synthetic', () => page.goto(target.href, { timeout: STEP_MS }));
  await step('meshdRenderMs', () => page.waitForFunction(
    () => typeof window.meshdRenderMs === 'number', null, { timeout: STEP_MS }));
  const renderMs = await page.evaluate(() => window.meshdRenderMs);
  const rowCount = () => page.locator('#member-rows tr[data-member]').count();

  await step('1,000 counted, one page drawn', async () => {
    check(await page.textContent('#count-total') === String(SYNTHETIC), 'total is not 1000');
    check(await rowCount() === PAGE_SIZE, `${await rowCount()} rows drawn, not ${PAGE_SIZE}`);
  });
  await step('paging', async () => {
    await page.click('#page-next');
    await page.waitForSelector(`tr[data-member="node-${String(PAGE_SIZE + 1).padStart(4, '0')}"]`, { timeout: STEP_MS });
    await page.click('#page-prev');
    await page.waitForSelector('tr[data-member="node-0001"]', { timeout: STEP_MS });
  });
  await step('sorting by state puts DOWN first', async () => {
    await page.click('#member-head button[data-sort="state"]');
    await page.waitForSelector('#member-head th[aria-sort="ascending"] button[data-sort="state"]', { timeout: STEP_MS });
    const first = await page.getAttribute('#member-rows tr[data-member] td[data-state]', 'data-state');
    check(first === 'DOWN', `first row after sorting is ${first}`);
  });
  await step('filtering by state and name', async () => {
    await page.selectOption('#filter-state', 'SUSPECTED');
    await page.waitForFunction(() => {
      const states = [...document.querySelectorAll('#member-rows td[data-state]')].map((c) => c.dataset.state);
      return states.length > 0 && states.every((s) => s === 'SUSPECTED');
    }, null, { timeout: STEP_MS });
    await page.selectOption('#filter-state', '');
    await page.fill('#filter-name', 'node-0999');
    await page.waitForFunction(() => document.querySelectorAll('#member-rows tr[data-member]').length === 1,
      null, { timeout: STEP_MS });
    await page.fill('#filter-name', '');
    // The synthetic cluster spreads its members round-robin over 4 regions: 250 each.
    await page.selectOption('#filter-region', 'us-east');
    await page.waitForFunction(() => {
      const regions = [...document.querySelectorAll('#member-rows td[data-col="region"]')].map((c) => c.textContent);
      return regions.length === 100 && regions.every((r) => r === 'us-east')
        && document.querySelector('#page-info')?.textContent.includes('250');
    }, null, { timeout: STEP_MS });
    await page.selectOption('#filter-region', '');
  });
  await step('grouping by region', async () => {
    await page.selectOption('#group-by', 'region');
    await page.waitForSelector('#member-rows tr.group-row', { timeout: STEP_MS });
  });

  const extension = path.extname(screenshot);
  await page.screenshot({ path: `${screenshot.slice(0, -extension.length || undefined)}-synthetic${extension}` });
  check(problems.length === 0, `the synthetic page reported problems:\n${problems.join('\n')}`);
  await page.close();
  return renderMs;
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
});
let failed = false;
try {
  await livePage(browser);
  await reconnectPage(browser);
  const renderMs = await syntheticPage(browser);
  console.log(JSON.stringify({ render_ms_1000: renderMs, screenshot }));
} catch (error) {
  console.error(error.message);
  failed = true;
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
