// Pieces shared by the two oidc-provider IdPs: interop/auth/idp.mjs (automatic login and
// consent) and interop/browser/idp.mjs (login and consent pages a browser fills in).
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

// A request handler threw: log it on stderr and answer 500 server_error (or end the response
// if its headers were already sent).
export function answerServerError(req, res, pathname, err) {
  process.stderr.write(`idp: ${req.method} ${pathname}: ${err?.stack ?? err}\n`);
  if (!res.headersSent) {
    res.statusCode = 500;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ error: 'server_error', error_description: String(err?.message ?? err) }));
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

// SIGTERM / SIGINT: close the server and its connections, exit 0.
export function exitOnSignals(server) {
  const stop = () => { server.close(); server.closeAllConnections(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
