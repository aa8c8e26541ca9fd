// A person logging in, played by headless Chromium (Debian's `chromium`, driven by
// playwright-core): opens the authorization URL that `thv proxy` printed, fills in the
// IdP's login page (username + password, typed), approves the consent page, and follows the
// redirect to the proxy's loopback callback, whose page it reads.
//
// Each run uses a fresh profile (--user-data-dir in a new temporary folder), so the IdP has
// no session cookie and shows both pages. Requests to anything but loopback are aborted and
// reported (there should be none). A screenshot of every page lands in --shots.
//
// Prints one JSON line on stdout:
//   {"ok": bool, "error": str|null, "steps": [{"url", "title", "action"}...],
//    "callback": {"status", "url", "text", "headers"}|null, "blocked": [url...],
//    "wrong_password_refused": bool|null}
// Exit status 0 only if the browser reached the callback and it answered 200.
//
// Usage: node login.mjs --url URL [--user alice] [--password P] [--shots DIR]
//                       [--wrong-password-first] [--deny] [--timeout-ms 45000] [--report FILE]
//                       [--device [--user-code CODE]]
// With --device, URL is a device flow verification URI (RFC 8628 §3.3): the page shows (or
// asks for) the user code and is confirmed, then the same login and consent, ending on the
// IdP's "signed in" page; "callback" stays null and "device" says how it ended.
// As $BROWSER for thv (which appends the URL): BROWSER="node login.mjs --report FILE --url"
// (the report then goes to FILE too, since thv discards the browser's output).

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { chromium } from 'playwright-core';

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    user: { type: 'string', default: 'alice' },
    password: { type: 'string', default: 'wonderland' },
    shots: { type: 'string', default: '' },
    'wrong-password-first': { type: 'boolean', default: false },
    deny: { type: 'boolean', default: false },
    'timeout-ms': { type: 'string', default: '45000' },
    chromium: { type: 'string', default: '/usr/bin/chromium' },
    report: { type: 'string', default: '' },
    // RFC 8628: --url is a verification URI; the walk ends on the IdP's "signed in" page
    // (or its error page), not at a callback. --user-code is typed when the page asks.
    device: { type: 'boolean', default: false },
    'user-code': { type: 'string', default: '' },
  },
  allowPositionals: true,
});

const TIMEOUT = Number.parseInt(opts['timeout-ms'], 10);
const MAX_STEPS = 8;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);
const report = { ok: false, error: null, steps: [], callback: null, blocked: [], wrong_password_refused: null };

const authUrl = new URL(opts.url);
const redirectUri = authUrl.searchParams.get('redirect_uri');
if (!redirectUri && !opts.device) {
  report.error = 'the authorization URL has no redirect_uri';
  process.stdout.write(`${JSON.stringify(report)}\n`);
  if (opts.report) writeFileSync(opts.report, `${JSON.stringify(report)}\n`);
  process.exit(1);
}
const noQuery = (u) => { const x = new URL(u); return `${x.origin}${x.pathname}`; };
const atCallback = (u) => !opts.device && noQuery(u) === noQuery(redirectUri);

const profile = mkdtempSync(join(tmpdir(), 'thv-chromium-'));
if (opts.shots) mkdirSync(opts.shots, { recursive: true });
let context;
const deadline = setTimeout(() => {
  report.error = `overall timeout ${TIMEOUT} ms`;
  process.stdout.write(`${JSON.stringify(report)}\n`);
  if (opts.report) writeFileSync(opts.report, `${JSON.stringify(report)}\n`);
  process.exit(1);
}, TIMEOUT + 15000);

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: opts.chromium,
    headless: true,
    timeout: 30000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
  context.setDefaultTimeout(15000);
  await context.route('**/*', (route) => {
    const u = new URL(route.request().url());
    if (['http:', 'https:'].includes(u.protocol) && !LOOPBACK.has(u.hostname)) {
      report.blocked.push(u.href);
      return route.abort('blockedbyclient');
    }
    return route.continue();
  });
  const page = context.pages()[0] ?? await context.newPage();
  let lastMain = null;
  page.on('response', (response) => {
    if (response.request().frame() === page.mainFrame() && response.request().isNavigationRequest()) {
      lastMain = response;
    }
  });
  const shot = async (name) => {
    if (opts.shots) await page.screenshot({ path: join(opts.shots, `${report.steps.length}-${name}.png`) }).catch(() => {});
  };
  const step = async (action) => {
    const url = page.url();
    report.steps.push({ url: noQuery(url), title: await page.title().catch(() => ''), action });
  };
  const submit = async (selector) => {
    await Promise.all([page.waitForNavigation({ waitUntil: 'load', timeout: 15000 }), page.click(selector)]);
  };

  await page.goto(opts.url, { waitUntil: 'load' });
  for (let i = 0; i < MAX_STEPS; i += 1) {
    const url = page.url();
    if (atCallback(url)) {
      const text = (await page.textContent('body').catch(() => '')) ?? '';
      report.callback = {
        status: lastMain?.status() ?? null,
        url: noQuery(url),
        text: text.trim().slice(0, 500),
        headers: lastMain ? await lastMain.allHeaders() : {},
        query_keys: [...new URL(url).searchParams.keys()],
      };
      // Handed to the runner only so it can prove the code never shows up in thv's output.
      report.code = new URL(url).searchParams.get('code');
      await step('callback');
      await shot('callback');
      break;
    }
    if (opts.device && (await page.$('#device-success') || await page.$('#device-error'))) {
      const success = Boolean(await page.$('#device-success'));
      report.device = {
        status: lastMain?.status() ?? null,
        success,
        text: ((await page.textContent('body').catch(() => '')) ?? '').trim().slice(0, 300),
      };
      await step(success ? 'signed in' : 'device error');
      await shot(success ? 'device-success' : 'device-error');
      break;
    }
    if (opts.device && await page.$('#device-continue')) {
      await shot('device');
      const input = await page.$('input[name=user_code]:not([type=hidden])');
      if (input) {
        await input.fill(opts['user-code']);
        await step('enter the user code');
      } else {
        await step('confirm the user code');
      }
      await submit(!input && opts.deny ? '#device-abort' : '#device-continue');
      continue;
    }
    if (await page.$('#username')) {
      await shot('login');
      if (opts['wrong-password-first'] && report.wrong_password_refused === null) {
        await page.fill('#username', opts.user);
        await page.fill('#password', `${opts.password}-wrong`);
        await step('login with a wrong password');
        await submit('#sign-in');
        report.wrong_password_refused = Boolean(await page.$('#error')) && Boolean(await page.$('#username'));
        await shot('login-refused');
        continue;
      }
      await page.fill('#username', opts.user);
      await page.type('#password', opts.password);
      await step('login');
      await submit('#sign-in');
      continue;
    }
    if (await page.$('#allow')) {
      await shot('consent');
      await step(opts.deny ? 'deny' : 'allow');
      await submit(opts.deny ? '#deny' : '#allow');
      continue;
    }
    await shot('unexpected');
    await step('unexpected page');
    const text = (await page.textContent('body').catch(() => '')) ?? '';
    throw new Error(`unexpected page ${noQuery(url)} (${lastMain?.status()}): ${text.trim().slice(0, 300)}`);
  }
  if (opts.device) {
    if (!report.device) throw new Error(`did not reach the end of the device flow within ${MAX_STEPS} steps`);
    report.ok = report.device.success && report.device.status === 200;
    if (!report.ok) report.error = `the device flow ended with: ${report.device.text}`;
  } else {
    if (!report.callback) throw new Error(`did not reach the callback within ${MAX_STEPS} steps`);
    report.ok = report.callback.status === 200;
    if (!report.ok) report.error = `the callback answered ${report.callback.status}`;
  }
} catch (err) {
  report.error = `${err?.name ?? 'Error'}: ${String(err?.message ?? err).split('\n')[0]}`;
} finally {
  clearTimeout(deadline);
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(`${JSON.stringify(report)}\n`);
if (opts.report) writeFileSync(opts.report, `${JSON.stringify(report)}\n`);
process.exit(report.ok ? 0 : 1);
