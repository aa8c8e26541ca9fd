// A real OpenID Provider (npm `oidc-provider`) for the thv incoming-auth harness.
//
// Runs on 127.0.0.1 only. Prints exactly one JSON line on stdout once it listens:
//   {"issuer":"http://127.0.0.1:PORT","port":PORT,"jwks_uri":"…","kids":["…"]}
// Everything else (oidc-provider warnings, errors) goes to stderr.
//
// What it is configured for (see README.md):
// * RFC 8707 resource indicators: an access token requested for resource R is a JWT
//   (RFC 9068, `typ: at+jwt`) with `aud` = R, signed with the key set loaded from --keys.
//   Client `minter-opaque` gets opaque (introspectable, revocable) tokens instead, and
//   client `minter-es256` gets ES256-signed JWTs.
// * Confidential clients for non-interactive minting (client_credentials + resource):
//   `minter`, `minter-es256`, `minter-opaque` (secret = "<client_id>-secret").
// * `thv-proxy` / `thv-proxy-secret`: a confidential client the proxy uses for RFC 7662
//   introspection (client_secret_basic or client_secret_post).
// * Open dynamic client registration (RFC 7591) so an MCP SDK registers itself as a public
//   client with PKCE; login and consent interactions are approved automatically (account
//   --user, default "alice"), so a headless client completes the flow by following redirects
//   with a cookie jar.
// * Introspection and revocation on.
// * RFC 8693 token exchange, added through oidc-provider's documented extension point for
//   custom grants (`provider.registerGrantType`): confidential client `thv-exchange` /
//   `thv-exchange-secret` trades a subject access token this IdP signed for a new RS256 JWT
//   for the requested `audience` (default `mcp-upstream`), with the subject's `sub` and
//   `act: {sub: <client>}` (RFC 8693 §4.1). A subject listed by POST /_test/revoke-subject?sub=S
//   is refused with invalid_grant. /_test/stats counts exchanges per subject.
// * Every HTTP request is counted and (with --log) appended to a JSONL file; GET /_test/stats
//   returns the counters (e.g. how often the JWKS was fetched). Restart with another --keys
//   file on the same --port to rotate the signing key.
//
// Usage: node idp.mjs --port 0 --keys keys.json [--log requests.jsonl] [--ttl 300]
//                     [--user alice] [--jwks-cache-control "max-age=300"] [--path-prefix /realms/x]

import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { createLocalJWKSet, exportJWK, generateKeyPair, importJWK, jwtVerify, SignJWT } from 'jose';
import Provider, { errors } from 'oidc-provider';

import { exitOnSignals, grantMissing, resourceIndicators, sendJson, serveIdp } from '../idp-common.mjs';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: process.env.IDP_PORT ?? '0' },
    keys: { type: 'string', default: process.env.IDP_KEYS ?? '' },
    log: { type: 'string', default: process.env.IDP_LOG ?? '' },
    ttl: { type: 'string', default: process.env.IDP_TOKEN_TTL ?? '300' },
    user: { type: 'string', default: process.env.IDP_USER ?? 'alice' },
    'jwks-cache-control': { type: 'string', default: '' },
    'path-prefix': { type: 'string', default: '' },
  },
});

const SCOPES = ['openid', 'offline_access', 'mcp:tools', 'mcp:admin'];
const RESOURCE_SCOPE = 'mcp:tools mcp:admin';
const ACCESS_TOKEN_TTL = Number.parseInt(opts.ttl, 10);

async function generateKeySet() {
  const keys = [];
  for (const alg of ['RS256', 'ES256']) {
    const { privateKey } = await generateKeyPair(alg, { extractable: true, modulusLength: 2048 });
    const jwk = await exportJWK(privateKey);
    keys.push({ ...jwk, kid: `${alg.toLowerCase()}-${randomUUID()}`, alg, use: 'sig' });
  }
  return { keys };
}

async function loadKeySet(path) {
  if (!path) return generateKeySet();
  if (!existsSync(path)) {
    const set = await generateKeySet();
    writeFileSync(path, `${JSON.stringify(set, null, 2)}\n`, { mode: 0o600 });
    return set;
  }
  return JSON.parse(readFileSync(path, 'utf8'));
}

const keySet = await loadKeySet(opts.keys);

const counters = { total: 0, byPath: {}, exchanges: {} };
const revokedSubjects = new Set();
function record(entry) {
  counters.total += 1;
  counters.byPath[entry.path] = (counters.byPath[entry.path] ?? 0) + 1;
  if (opts.log) appendFileSync(opts.log, `${JSON.stringify(entry)}\n`);
}

let provider;
let callback;

async function autoInteraction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt } = details;
  let result;
  if (prompt.name === 'login') {
    // login_hint picks the account, so one IdP process issues tokens to several users.
    result = { login: { accountId: details.params.login_hint || opts.user } };
  } else if (prompt.name === 'consent') {
    result = { consent: { grantId: await grantMissing(provider, details) } };
  } else {
    result = { error: 'access_denied', error_description: `unsupported prompt ${prompt.name}` };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

const PREFIX = opts['path-prefix'].replace(/\/+$/, '');

async function handle(req, res) {
  let url = new URL(req.url, 'http://127.0.0.1');
  const entry = { t: Date.now() / 1000, method: req.method, path: url.pathname };
  res.on('finish', () => record({ ...entry, status: res.statusCode }));
  if (url.pathname === '/_test/stats') {
    sendJson(res, { ...counters, kids: keySet.keys.map((k) => k.kid) });
    return;
  }
  if (url.pathname === '/_test/revoke-subject' && req.method === 'POST') {
    revokedSubjects.add(url.searchParams.get('sub'));
    sendJson(res, { revoked: [...revokedSubjects] });
    return;
  }
  if (PREFIX) {
    // Issuer with a path (like a Keycloak realm): only PREFIX/... exists, mounted the way
    // oidc-provider documents (strip the prefix, keep originalUrl).
    if (url.pathname !== PREFIX && !url.pathname.startsWith(`${PREFIX}/`)) {
      sendJson(res, { error: 'not_found' }, 404);
      return;
    }
    req.originalUrl = req.url;
    req.url = req.url.slice(PREFIX.length) || '/';
    url = new URL(req.url, 'http://127.0.0.1');
  }
  if (url.pathname.startsWith('/interaction/')) {
    await autoInteraction(req, res);
    return;
  }
  if (url.pathname === '/jwks' && opts['jwks-cache-control']) {
    res.setHeader('cache-control', opts['jwks-cache-control']);
  }
  await callback(req, res);
}

const { server, port, issuer } = await serveIdp(handle, opts.port, PREFIX);

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const publicKeys = createLocalJWKSet({
  keys: keySet.keys.map(({ kty, crv, x, y, n, e, kid, alg, use }) => ({ kty, crv, x, y, n, e, kid, alg, use })),
});
const exchangeKey = keySet.keys.find((k) => k.alg === 'RS256');
const exchangeSigner = await importJWK(exchangeKey, 'RS256');

// The RFC 8693 grant (§2.1 request, §2.2.1 answer): the subject token must be an access token
// this IdP signed, for a subject not revoked.
async function tokenExchange(ctx) {
  const { params, client } = ctx.oidc;
  if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('subject_token_type must be an access token');
  }
  if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
    throw new errors.InvalidRequest('only access tokens are issued');
  }
  let subject;
  try {
    ({ payload: subject } = await jwtVerify(params.subject_token, publicKeys, { issuer: provider.issuer }));
  } catch (err) {
    throw new errors.InvalidGrant(`subject_token is not valid (${err.code ?? 'invalid'})`);
  }
  if (!subject.sub || revokedSubjects.has(subject.sub)) {
    throw new errors.InvalidGrant('the subject is revoked');
  }
  counters.exchanges[subject.sub] = (counters.exchanges[subject.sub] ?? 0) + 1;
  const now = Math.floor(Date.now() / 1000);
  const accessToken = await new SignJWT({ scope: params.scope || undefined, client_id: client.clientId, act: { sub: client.clientId } })
    .setProtectedHeader({ alg: 'RS256', kid: exchangeKey.kid, typ: 'at+jwt' })
    .setIssuer(provider.issuer)
    .setSubject(subject.sub)
    .setAudience(params.audience || 'mcp-upstream')
    .setIssuedAt(now)
    .setExpirationTime(now + ACCESS_TOKEN_TTL)
    .setJti(randomUUID())
    .sign(exchangeSigner);
  ctx.body = {
    access_token: accessToken,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: 'Bearer',
    expires_in: ACCESS_TOKEN_TTL,
    ...(params.scope ? { scope: params.scope } : {}),
  };
}

const minter = (clientId) => ({
  client_id: clientId,
  client_secret: `${clientId}-secret`,
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: RESOURCE_SCOPE,
  token_endpoint_auth_method: 'client_secret_basic',
});

provider = new Provider(issuer, {
  clients: [
    minter('minter'),
    minter('minter-es256'),
    minter('minter-opaque'),
    {
      client_id: 'thv-proxy',
      client_secret: 'thv-proxy-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'thv-exchange',
      client_secret: 'thv-exchange-secret',
      grant_types: [TOKEN_EXCHANGE],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'thv-proxy-post',
      client_secret: 'thv-proxy-secret',
      grant_types: [],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_post',
    },
  ],
  jwks: keySet,
  scopes: SCOPES,
  claims: { openid: ['sub'] },
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  cookies: { keys: ['thv-interop-auth-cookie-key'] },
  interactions: { url: (_ctx, interaction) => `${PREFIX}/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    // Explicit policies (the defaults print notices): any authenticated confidential client may
    // introspect; a public client only its own tokens; revocation only by the owning client.
    introspection: {
      enabled: true,
      allowedPolicy: async (ctx, client, token) => client.clientAuthMethod !== 'none' || token.clientId === client.clientId,
    },
    revocation: {
      enabled: true,
      allowedPolicy: async (_ctx, client, token) => token.clientId === client.clientId,
    },
    registration: { enabled: true },
    resourceIndicators: resourceIndicators(async (_ctx, resource, client) => ({
      scope: RESOURCE_SCOPE,
      audience: resource,
      accessTokenTTL: ACCESS_TOKEN_TTL,
      accessTokenFormat: client?.clientId === 'minter-opaque' ? 'opaque' : 'jwt',
      jwt: { sign: { alg: client?.clientId === 'minter-es256' ? 'ES256' : 'RS256' } },
    })),
  },
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    ClientCredentials: ACCESS_TOKEN_TTL,
    AuthorizationCode: 60,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 14 * 24 * 3600,
    Session: 3600,
  },
});
provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange,
  ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'scope', 'actor_token', 'actor_token_type']);
callback = provider.callback();

process.stdout.write(`${JSON.stringify({
  issuer,
  port,
  jwks_uri: `${issuer}/jwks`,
  path_prefix: PREFIX,
  kids: keySet.keys.map((k) => k.kid),
})}\n`);

exitOnSignals(server);
