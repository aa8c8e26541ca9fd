// A real OpenID Provider (npm `oidc-provider`) for the thv authorization harness.
//
// Runs on 127.0.0.1 only. Prints exactly one JSON line on stdout once it listens:
//   {"issuer":"http://127.0.0.1:PORT","port":PORT,"jwks_uri":"…","users":["alice","bob"]}
// Everything else goes to stderr.
//
// What it is configured for:
// * Users with claims: --users FILE holds {"alice": {"role": "reader", "groups": [...], ...}, ...}.
//   An access token issued to a user is a JWT (RFC 9068, `typ: at+jwt`, RS256) whose `sub` is the
//   user's name and which carries that user's claims (oidc-provider `extraTokenClaims`), with
//   `aud` = the RFC 8707 `resource` the client asked for.
// * Open dynamic client registration (RFC 7591), the authorization-code flow with PKCE for a
//   public client; login and consent are approved automatically as the user named by the
//   request's `login_hint`, so a headless client gets each user's token by following redirects.
// * Every HTTP request is counted; GET /_test/stats returns the counters.
//
// Usage: node idp.mjs --port 0 --users users.json [--ttl 600]

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

import { exitOnSignals, grantMissing, resourceIndicators, sendJson, serveIdp } from '../idp-common.mjs';

const { values: opts } = parseArgs({
  options: {
    port: { type: 'string', default: '0' },
    users: { type: 'string', default: '' },
    ttl: { type: 'string', default: '600' },
  },
});

const USERS = opts.users ? JSON.parse(readFileSync(opts.users, 'utf8')) : { alice: {} };
const DEFAULT_USER = Object.keys(USERS)[0];
const SCOPES = ['openid', 'offline_access', 'mcp:tools'];
const ACCESS_TOKEN_TTL = Number.parseInt(opts.ttl, 10);

const { privateKey } = await generateKeyPair('RS256', { extractable: true, modulusLength: 2048 });
const signingKey = { ...(await exportJWK(privateKey)), kid: `rs256-${randomUUID()}`, alg: 'RS256', use: 'sig' };

const counters = { total: 0, byPath: {} };
let provider;
let callback;

async function autoInteraction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  let result;
  if (prompt.name === 'login') {
    const hint = params.login_hint;
    if (hint && !Object.hasOwn(USERS, hint)) {
      result = { error: 'access_denied', error_description: `unknown user ${hint}` };
    } else {
      result = { login: { accountId: hint || DEFAULT_USER } };
    }
  } else if (prompt.name === 'consent') {
    result = { consent: { grantId: await grantMissing(provider, details) } };
  } else {
    result = { error: 'access_denied', error_description: `unsupported prompt ${prompt.name}` };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

async function handle(req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  res.on('finish', () => {
    counters.total += 1;
    counters.byPath[url.pathname] = (counters.byPath[url.pathname] ?? 0) + 1;
  });
  if (url.pathname === '/_test/stats') {
    sendJson(res, counters);
    return;
  }
  if (url.pathname.startsWith('/interaction/')) {
    await autoInteraction(req, res);
    return;
  }
  await callback(req, res);
}

const { server, port, issuer } = await serveIdp(handle, opts.port);

provider = new Provider(issuer, {
  clients: [],
  jwks: { keys: [signingKey] },
  scopes: SCOPES,
  claims: { openid: ['sub'] },
  findAccount: async (_ctx, sub) => (Object.hasOwn(USERS, sub) ? { accountId: sub, claims: async () => ({ sub }) } : undefined),
  extraTokenClaims: async (_ctx, token) => (token.accountId && Object.hasOwn(USERS, token.accountId) ? { ...USERS[token.accountId] } : {}),
  cookies: { keys: ['thv-interop-authz-cookie-key'] },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    resourceIndicators: resourceIndicators(async (_ctx, resource) => ({
      scope: 'mcp:tools',
      audience: resource,
      accessTokenTTL: ACCESS_TOKEN_TTL,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: 'RS256' } },
    })),
  },
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    AuthorizationCode: 60,
    Grant: 3600,
    IdToken: 3600,
    Interaction: 600,
    RefreshToken: 3600,
    Session: 3600,
  },
});
callback = provider.callback();

process.stdout.write(`${JSON.stringify({ issuer, port, jwks_uri: `${issuer}/jwks`, users: Object.keys(USERS) })}\n`);

exitOnSignals(server);
