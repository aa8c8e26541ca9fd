// A real OpenID Provider (npm `oidc-provider`) for the thv real-browser login suite.
//
// Runs on 127.0.0.1 only. Prints exactly one JSON line on stdout once it listens:
//   {"issuer":"http://127.0.0.1:PORT","port":PORT,...}
// Everything else (oidc-provider notices, errors) goes to stderr.
//
// How it is configured (see README.md):
// * A person logs in: interactive login and consent pages (HTML forms, served through
//   oidc-provider's interaction API) that a real browser has to fill in: user `--user`
//   (default "alice") with password `--password`; a wrong password is refused and the form
//   shown again. The consent page lists the client, the scopes and the resource, with
//   "Allow" and "Deny" buttons. No external resources (no fonts, no scripts).
// * RFC 8707 resource indicators: an access token requested for resource R is an RFC 9068
//   JWT (`typ: at+jwt`) with `aud` = R, scope `mcp:tools`, lifetime `--ttl` seconds
//   (default 5, so every token the proxy holds is about to expire and gets refreshed).
// * Refresh tokens for every client allowed the `refresh_token` grant (as Keycloak and most
//   IdPs do). oidc-provider's default follows OIDC Core §11 to the letter: `offline_access` is
//   dropped unless the request also says `prompt=consent`, which MCP clients (thv included)
//   do not send, so no refresh token would ever be issued. Rotated on every use for public
//   clients, oidc-provider's default (reusing a rotated refresh token revokes the grant).
// * Open dynamic client registration (RFC 7591), PKCE S256 required for public clients,
//   RFC 9207 `iss` in authorization responses, revocation (RFC 7009) and introspection.
// * Pre-registered confidential clients (client_secret_basic, native loopback redirect URIs
//   given with --redirect-uris): `thv-oidc` (secret --oidc-secret) and `thv-plain` (secret
//   --plain-secret), and `minter` (client_credentials, secret --minter-secret) that mints
//   tokens for the static-bearer check.
// * The device flow (RFC 8628, oidc-provider's features.deviceFlow) for the pre-registered
//   `thv-device` (client_secret_basic, secret --device-secret): its verification pages
//   (enter the code, confirm it, signed in) are plain forms like the login pages, followed by
//   the same login and consent.
// * POST /_test/token-outage?seconds=N: the token endpoint answers 503 temporarily_unavailable
//   for N seconds (a transient outage).
// * Every request to /token is summarized (grant_type, client_id, client authentication
//   method, resource, scope; never a token, code or secret, except the device code, which
//   the runner needs to prove thv never logs it) in --log (JSONL) together with
//   oidc-provider's events; GET /_test/stats returns the counters.
//
// Usage: node idp.mjs [--port 0] [--ttl 5] [--user alice] [--password P]
//                     [--redirect-uris http://localhost:P1/callback,...]
//                     [--oidc-secret S] [--plain-secret S] [--minter-secret S]
//                     [--device-secret S] [--log file]

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import * as querystring from 'node:querystring';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

import { exitOnSignals, grantMissing, resourceIndicators, sendJson, serveIdp } from '../idp-common.mjs';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    ttl: { type: 'string', default: '5' },
    user: { type: 'string', default: 'alice' },
    password: { type: 'string', default: 'wonderland' },
    'redirect-uris': { type: 'string', default: 'http://localhost:8666/callback' },
    'oidc-secret': { type: 'string', default: 'thv-oidc-secret' },
    'plain-secret': { type: 'string', default: 'thv-plain-secret' },
    'minter-secret': { type: 'string', default: 'minter-secret' },
    'device-secret': { type: 'string', default: 'thv-device-secret' },
    log: { type: 'string', default: '' },
  },
});

const ACCESS_TOKEN_TTL = Number.parseInt(opts.ttl, 10);
const RESOURCE_SCOPE = 'mcp:tools';
const REDIRECT_URIS = opts['redirect-uris'].split(',').filter(Boolean);

function jwks() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { keys: [{ ...privateKey.export({ format: 'jwk' }), kid: `rs256-${randomUUID()}`, alg: 'RS256', use: 'sig' }] };
}

const counters = { requests: {}, events: {}, token: {}, login_failures: 0, pages: {}, outage_refused: 0 };
let tokenOutageUntil = 0; // POST /_test/token-outage?seconds=N: /token answers 503 until then
const bump = (map, key) => { map[key] = (map[key] ?? 0) + 1; };
function log(entry) {
  if (opts.log) appendFileSync(opts.log, `${JSON.stringify({ t: Date.now() / 1000, ...entry })}\n`);
}

// ------------------------------------------------------------------------------------------
// Interaction pages (what the browser fills in).

const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

function html(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;max-width:28em;margin:3em auto}label,input,button{display:block;margin:.5em 0}</style>
</head><body><h1>${esc(title)}</h1>${body}</body></html>`;
}

function page(res, title, body, status = 200) {
  res.statusCode = status;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.setHeader('cache-control', 'no-store');
  res.setHeader('x-frame-options', 'DENY');
  res.end(html(title, body));
}

// The device flow's own pages (RFC 8628 §3.3), rendered by oidc-provider into the koa
// context: its defaults load web fonts, which the suite's Chromium may not fetch. `form` is
// oidc-provider's hidden form (xsrf, user_code); the buttons submit it.
function devicePage(ctx, title, body) {
  bump(counters.pages, title);
  ctx.type = 'html';
  ctx.body = html(title, body);
}

const deviceFlow = {
  enabled: true,
  userCodeInputSource: async (ctx, form, _out, err) => devicePage(ctx, 'Enter the code', `
${err ? `<p id="device-error" role="alert">${esc(err.error ?? err.name ?? 'error')}: ${esc(err.error_description ?? err.message ?? '')}</p>` : ''}
${form}<button id="device-continue" type="submit" form="op.deviceInputForm">Continue</button>`),
  userCodeConfirmSource: async (ctx, form, client, _deviceInfo, userCode) => devicePage(ctx, 'Confirm the device', `
<p><b>${esc(client.clientName ?? client.clientId)}</b> shows the code <code id="user-code">${esc(userCode)}</code>.</p>
${form}<button id="device-continue" type="submit" form="op.deviceConfirmForm">Continue</button>
<button id="device-abort" type="submit" form="op.deviceConfirmForm" name="abort" value="yes">Abort</button>`),
  successSource: async (ctx) => devicePage(ctx, 'Device signed in', '<p id="device-success">You can close this page.</p>'),
};

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16 * 1024) throw new Error('form too large');
    chunks.push(chunk);
  }
  return querystring.parse(Buffer.concat(chunks).toString('utf8'));
}

let provider;

function loginPage(res, uid, params, error) {
  bump(counters.pages, 'login');
  page(res, 'Sign in', `
<p>Sign in to continue to <b>${esc(params.client_id)}</b>.</p>
${error ? `<p id="error" role="alert">${esc(error)}</p>` : ''}
<form id="login" method="post" action="/interaction/${esc(uid)}/login" autocomplete="off">
  <label for="username">Username</label><input id="username" name="username" type="text" required>
  <label for="password">Password</label><input id="password" name="password" type="password" required>
  <button id="sign-in" type="submit">Sign in</button>
</form>`);
}

function consentPage(res, uid, params, details, client) {
  bump(counters.pages, 'consent');
  const scopes = new Set([
    ...(details.missingOIDCScope ?? []),
    ...Object.values(details.missingResourceScopes ?? {}).flat(),
  ]);
  const resources = Object.keys(details.missingResourceScopes ?? {});
  page(res, 'Authorize', `
<p><b id="client">${esc(client?.clientName ?? params.client_id)}</b> asks for access to your account.</p>
<ul id="scopes">${[...scopes].map((s) => `<li>${esc(s)}</li>`).join('')}</ul>
<p>Resource: <span id="resource">${esc(resources.join(' ') || params.resource || '(none)')}</span></p>
<form method="post" action="/interaction/${esc(uid)}/confirm"><button id="allow" type="submit">Allow</button></form>
<form method="post" action="/interaction/${esc(uid)}/abort"><button id="deny" type="submit">Deny</button></form>`);
}

async function interaction(req, res, url) {
  const [, , uid, action] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params } = details;
  if (req.method === 'GET' && !action) {
    if (prompt.name === 'login') return loginPage(res, uid, params);
    if (prompt.name === 'consent') {
      const client = await provider.Client.find(params.client_id);
      return consentPage(res, uid, params, prompt.details, client);
    }
    return page(res, 'Error', `<p>unsupported prompt ${esc(prompt.name)}</p>`, 501);
  }
  if (req.method !== 'POST') return page(res, 'Error', '<p>method not allowed</p>', 405);
  const form = await readForm(req);
  if (action === 'login' && prompt.name === 'login') {
    if (form.username !== opts.user || form.password !== opts.password) {
      counters.login_failures += 1;
      log({ event: 'login.failed' });
      return loginPage(res, uid, params, 'Wrong username or password.');
    }
    log({ event: 'login.success', account: opts.user });
    return provider.interactionFinished(req, res, { login: { accountId: opts.user } }, { mergeWithLastSubmission: false });
  }
  if (action === 'confirm' && prompt.name === 'consent') {
    const grantId = await grantMissing(provider, details);
    log({ event: 'consent.allowed', client_id: params.client_id });
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  if (action === 'abort') {
    log({ event: 'consent.denied', client_id: params.client_id });
    return provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'End-User denied the request' }, { mergeWithLastSubmission: false });
  }
  return page(res, 'Error', '<p>unexpected form</p>', 400);
}

// ------------------------------------------------------------------------------------------
// Token endpoint summary: read the form first (oidc-provider then uses req.body), record what
// the client sent without any credential value.

function summarizeTokenRequest(req, form) {
  const authz = req.headers.authorization ?? '';
  let clientAuth = 'none';
  let clientId = form.client_id ?? null;
  if (/^basic /i.test(authz)) {
    clientAuth = 'client_secret_basic';
    try {
      const decoded = Buffer.from(authz.slice(6).trim(), 'base64').toString('utf8');
      clientId = decodeURIComponent(decoded.split(':')[0]);
    } catch { /* recorded as is */ }
  } else if (form.client_secret !== undefined) {
    clientAuth = 'client_secret_post';
  }
  return {
    event: 'token.request',
    grant_type: form.grant_type ?? null,
    client_id: clientId,
    client_auth: clientAuth,
    resource: form.resource ?? null,
    scope: form.scope ?? null,
    has_code_verifier: form.code_verifier !== undefined,
    // The one credential recorded: the runner proves the device code never reaches thv's
    // output, and only the IdP can tell it what the code was.
    device_code: form.device_code ?? null,
    redirect_uri: form.redirect_uri ?? null,
  };
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  bump(counters.requests, `${req.method} ${url.pathname.startsWith('/interaction/') ? '/interaction/*' : url.pathname}`);
  res.on('finish', () => log({ method: req.method, path: url.pathname, status: res.statusCode }));
  if (url.pathname === '/_test/stats') {
    sendJson(res, counters);
    return;
  }
  if (url.pathname === '/_test/token-outage' && req.method === 'POST') {
    tokenOutageUntil = Date.now() + 1000 * Number.parseFloat(url.searchParams.get('seconds') ?? '5');
    sendJson(res, { until: tokenOutageUntil / 1000 });
    return;
  }
  if (url.pathname.startsWith('/interaction/')) {
    await interaction(req, res, url);
    return;
  }
  if (url.pathname === '/token' && Date.now() < tokenOutageUntil) {
    // A transient outage of the token endpoint (a deploy, an overloaded IdP).
    counters.outage_refused += 1;
    log({ event: 'token.outage' });
    res.setHeader('retry-after', '1');
    sendJson(res, { error: 'temporarily_unavailable', error_description: 'try again later' }, 503);
    return;
  }
  if (url.pathname === '/token' && req.method === 'POST') {
    const chunks = [];
    for await (const chunk of req) chunks.push(chunk);
    const raw = Buffer.concat(chunks);
    const summary = summarizeTokenRequest(req, querystring.parse(raw.toString('utf8')));
    bump(counters.token, `${summary.grant_type} ${summary.client_auth}`);
    res.on('finish', () => log({ ...summary, status: res.statusCode }));
    req.body = raw;
  }
  await callback(req, res);
}

const { server, port, issuer } = await serveIdp(handle, opts.port);

const confidential = (clientId, secret) => ({
  client_id: clientId,
  client_secret: secret,
  client_name: `pre-registered ${clientId}`,
  application_type: 'native',
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  redirect_uris: REDIRECT_URIS,
  token_endpoint_auth_method: 'client_secret_basic',
});

provider = new Provider(issuer, {
  clients: [
    confidential('thv-oidc', opts['oidc-secret']),
    confidential('thv-plain', opts['plain-secret']),
    {
      client_id: 'minter',
      client_secret: opts['minter-secret'],
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope: RESOURCE_SCOPE,
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      // RFC 8628 only: no redirect URIs, no authorization endpoint.
      client_id: 'thv-device',
      client_secret: opts['device-secret'],
      client_name: 'thv device login',
      grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: jwks(),
  scopes: ['openid', 'offline_access', 'profile', 'email', RESOURCE_SCOPE],
  claims: { openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'] },
  findAccount: async (_ctx, sub) => (sub === opts.user
    ? { accountId: sub, claims: async () => ({ sub, name: 'Alice', email: `${sub}@example.test`, email_verified: true }) }
    : undefined),
  cookies: { keys: [randomUUID()] },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  pkce: { required: () => true },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    deviceFlow,
    registration: { enabled: true },
    introspection: {
      enabled: true,
      allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
    },
    resourceIndicators: resourceIndicators(async (_ctx, _resource, client) => ({
      scope: RESOURCE_SCOPE,
      // `minter` tokens are static bearer tokens for the proxy: they must outlive a check.
      accessTokenTTL: client?.clientId === 'minter' ? 600 : ACCESS_TOKEN_TTL,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: 'RS256' } },
    })),
  },
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    ClientCredentials: 600,
    AuthorizationCode: 60,
    DeviceCode: 600,
    Grant: 24 * 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 24 * 3600,
    Session: 3600,
  },
});
const callback = provider.callback();

for (const name of [
  'authorization.success', 'authorization.error', 'grant.success', 'grant.error', 'grant.revoked',
  'refresh_token.consumed', 'refresh_token.destroyed', 'revocation.error', 'registration_create.success',
  'registration_create.error', 'server_error', 'backchannel.error',
]) {
  provider.on(name, (...args) => {
    bump(counters.events, name);
    const err = args.find((a) => a instanceof Error);
    log({ event: name, error: err ? `${err.name}: ${err.error_description ?? err.message}` : undefined });
  });
}

process.stdout.write(`${JSON.stringify({ issuer, port, ttl: ACCESS_TOKEN_TTL, redirect_uris: REDIRECT_URIS })}\n`);

exitOnSignals(server);
