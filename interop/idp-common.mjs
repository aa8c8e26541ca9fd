// Pieces shared by the oidc-provider IdPs: interop/auth/idp.mjs and interop/authz/idp.mjs
// (automatic login and consent) and interop/browser/idp.mjs (login and consent pages a browser
// fills in).
// Node built-ins only, so it needs no node_modules of its own.

import http from 'node:http';

// Consent given: the interaction's grant (the existing one, or a new one for its account and
// client) with every scope, claim and resource scope the consent prompt found missing.
// Returns the saved grant's id.
export async function grantMissing(provider, { prompt, params, session, grantId }) {
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  return grant.save();
}

// The resourceIndicators feature (RFC 8707) of every IdP here: a request without `resource`
// gets the client's only one (or none), a refresh keeps the granted resource, and
// `getResourceServerInfo(ctx, resource, client)` says what a token for the resource is.
export function resourceIndicators(getResourceServerInfo) {
  return {
    enabled: true,
    defaultResource: async (_ctx, _client, oneOf) => oneOf ?? undefined,
    useGrantedResource: async () => true,
    getResourceServerInfo,
  };
}

// Answer with `value` as a JSON body.
export function sendJson(res, value, status = 200) {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(value));
}

// A request handler threw: log it on stderr and answer 500 server_error (or end the response
// if its headers were already sent).
export function answerServerError(req, res, pathname, err) {
  process.stderr.write(`idp: ${req.method} ${pathname}: ${err?.stack ?? err}\n`);
  if (!res.headersSent) {
    sendJson(res, { error: 'server_error', error_description: String(err?.message ?? err) }, 500);
  } else {
    res.end();
  }
}

// An HTTP server on 127.0.0.1:port (0: the OS picks), listening when the promise resolves.
export async function listenOnLoopback(handler, port) {
  const server = http.createServer(handler);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(Number.parseInt(port, 10), '127.0.0.1', resolve);
  });
  return server;
}

// An IdP's HTTP server on 127.0.0.1:port (0: the OS picks): `await handle(req, res)` answers each
// request, and if it throws, answerServerError does. Resolves, once it listens, to
// { server, port, issuer } with issuer http://127.0.0.1:PORT followed by `pathPrefix`.
export async function serveIdp(handle, port, pathPrefix = '') {
  const server = await listenOnLoopback((req, res) => {
    handle(req, res).catch((err) => answerServerError(req, res, new URL(req.url, 'http://127.0.0.1').pathname, err));
  }, port);
  const actual = server.address().port;
  return { server, port: actual, issuer: `http://127.0.0.1:${actual}${pathPrefix}` };
}

// SIGTERM / SIGINT// SIGTERM / SIGINT: close the server and its connections, exit 0.
export function exitOnSignals(server) {
  const stop = () => { server.close(); server.closeAllConnections(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
