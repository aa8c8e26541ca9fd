//! One request sent with the proxy's own token, and what to do with the target's answer:
//! on `401` renew the token once (refresh, or log in again) and resend (RFC 6750 §3.1,
//! MCP 2025-11-25 §Token Handling); on `403 insufficient_scope` log in again for the union
//! of the scopes and resend, at most [`MAX_STEP_UPS`] times (MCP 2025-11-25 §Step-Up
//! Authorization Flow); anything else goes back to the caller as it is.
//!
//! The rules are one plain function, [`next`]; [`Outbound::send`] applies them. Sending is
//! the caller's: it passes a function that sends one request to the target, so this module
//! knows nothing of the proxy's connections or deadlines, and no response is rendered
//! here. When no token can be had the caller gets [`SendError::Unavailable`] and answers
//! for itself (the proxy: `503` with `Retry-After`).

use std::future::Future;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version, request};
use http_body_util::Full;
use tracing::{info, warn};

use crate::outbound::discover::Challenged;
use crate::outbound::dpop::{Credential, nonce_challenge};
use crate::outbound::scope::insufficient_scope;
use crate::outbound::{Inner, Outbound, Unavailable};

/// Most re-authorizations for more scope on behalf of one request. With the login that
/// got the first token, an operation costs at most three authorizations (MCP 2025-11-25
/// §Step-Up Authorization Flow: retry "no more than a few times"; the conformance suite's
/// `auth/scope-retry-limit` allows three).
pub(crate) const MAX_STEP_UPS: usize = 2;

/// Why [`Outbound::send`] returns no response.
#[derive(Debug)]
pub(crate) enum SendError<E> {
    /// No token can be sent right now (a login is under way or failed, or the
    /// authorization server is down); the request was not sent, or not resent.
    Unavailable(Unavailable),
    /// Sending failed; the error is the send function's.
    Upstream(E),
}

/// What one request has used up so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Attempts {
    /// Whether the token was already renewed after a 401.
    pub(crate) renewed: bool,
    /// Whether the request was already resent with the MCP server's DPoP nonce.
    pub(crate) nonce: bool,
    /// How many step-ups were done.
    pub(crate) step_ups: usize,
}

/// What to do with the target's answer to a request sent with a renewable token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Hand the response to the caller.
    Relay,
    /// Renew the token (the target's challenge may name new metadata), then resend.
    Renew(Challenged),
    /// Resend with the DPoP nonce the target just gave (RFC 9449 §9), once.
    Nonce,
    /// The target refused a renewed token as well: give up without resending.
    Refused,
    /// Log in again asking for this scope as well, then resend.
    StepUp(String),
}

/// The retry rules: a 401 asking for a DPoP nonce is resent once with it; a 401 renews
/// once, a second 401 gives up; a `403` whose `Bearer`
/// challenge says `insufficient_scope` steps up while fewer than [`MAX_STEP_UPS`] were
/// done; everything else (another 403 included) is relayed.
pub(crate) fn next(status: StatusCode, headers: &HeaderMap, attempts: Attempts) -> Next {
    match status {
        StatusCode::UNAUTHORIZED if !attempts.nonce && nonce_challenge(headers) => Next::Nonce,
        StatusCode::UNAUTHORIZED if !attempts.renewed => Next::Renew(Challenged::from_headers(headers)),
        StatusCode::UNAUTHORIZED => Next::Refused,
        StatusCode::FORBIDDEN if attempts.step_ups < MAX_STEP_UPS => {
            insufficient_scope(headers).map_or(Next::Relay, Next::StepUp)
        }
        _ => Next::Relay,
    }
}

impl Outbound {
    /// Sends the request `parts` + `body` to the target through `send`, with the proxy's
    /// token, resending it as [`next`] says (the body is buffered, so a resend is exact).
    /// `parts` carry the target's URI and `Host`; their version and extensions are not
    /// used (requests go out as HTTP/1.1). A static token is sent once, as is.
    pub(crate) async fn send<B, E, F, Fut>(
        &self,
        parts: request::Parts,
        body: Bytes,
        mut send: F,
    ) -> Result<Response<B>, SendError<E>>
    where
        F: FnMut(Request<Full<Bytes>>) -> Fut,
        Fut: Future<Output = Result<Response<B>, E>>,
    {
        let request::Parts { method, uri, headers, .. } = parts;
        if let Inner::Static(header) = &*self.inner {
            // Nothing to renew: the request goes once, and its headers move.
            let auth = Some(Credential::bearer(header.clone()));
            return send(request(method, uri, headers, body, auth)).await.map_err(SendError::Upstream);
        }
        let mut attempts = Attempts::default();
        loop {
            let auth = self.credential().await.map_err(SendError::Unavailable)?;
            let req = request(method.clone(), uri.clone(), headers.clone(), body.clone(), auth.clone());
            let resp = send(req).await.map_err(SendError::Upstream)?;
            if let Some(bound) = auth.as_ref().and_then(|a| a.bound.as_ref()) {
                bound.remember_nonce(resp.headers());
            }
            match next(resp.status(), resp.headers(), attempts) {
                Next::Relay => return Ok(resp),
                Next::Nonce => {
                    attempts.nonce = true;
                    info!("the MCP server asks for a DPoP nonce; sending again with it");
                }
                Next::Renew(challenged) => {
                    attempts.renewed = true;
                    drop(resp);
                    Box::pin(self.recover_unauthorized(auth.as_ref().map(|a| &a.header), challenged))
                        .await
                        .map_err(SendError::Unavailable)?;
                }
                Next::Refused => {
                    warn!("the MCP server refused the proxy's new token as well");
                    return Err(SendError::Unavailable(Unavailable::Failed(
                        "the MCP server refuses the proxy's token".into(),
                    )));
                }
                Next::StepUp(scope) => {
                    attempts.step_ups += 1;
                    drop(resp);
                    info!(%scope, attempt = attempts.step_ups, "the MCP server asks for more scope; logging in again");
                    Box::pin(self.step_up(&scope)).await.map_err(SendError::Unavailable)?;
                }
            }
        }
    }
}

/// A request to the target: the method and headers (which already carry the target's
/// `Host`), the target URI, the buffered body and the proxy's own credentials.
fn request(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    auth: Option<Credential>,
) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(body));
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    if let Some(auth) = auth {
        auth.apply(&method, &uri, req.headers_mut());
    }
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    req
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::config::{Config, NoEnv};
    use http::HeaderValue;
    use http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};

    fn challenge(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(WWW_AUTHENTICATE, value.parse().unwrap());
        h
    }

    #[test]
    fn the_retry_rules() {
        const UNAUTHORIZED: StatusCode = StatusCode::UNAUTHORIZED;
        const FORBIDDEN: StatusCode = StatusCode::FORBIDDEN;
        const PRM: &str = "https://mcp.example/.well-known/oauth-protected-resource";
        let with_prm = challenge(&format!(r#"Bearer resource_metadata="{PRM}", scope="a""#));
        let scope = challenge(r#"Bearer error="insufficient_scope", scope="b c""#);
        let scopeless = challenge(r#"Bearer error="insufficient_scope""#);
        let other = challenge(r#"Bearer error="invalid_token""#);
        let none = HeaderMap::new();
        let mut nonce = challenge(r#"DPoP error="use_dpop_nonce""#);
        nonce.insert(crate::oauth::dpop::NONCE_HEADER, HeaderValue::from_static("n"));
        let after_nonce = Attempts { nonce: true, ..Attempts::default() };
        let fresh = Attempts::default();
        let renewed = Attempts { renewed: true, ..Attempts::default() };
        let stepped = |step_ups| Attempts { step_ups, ..Attempts::default() };
        let renew = || Next::Renew(Challenged::default());
        let step_up = || Next::StepUp("b c".into());
        let prm = Next::Renew(Challenged { scope: Some("a".into()), resource_metadata: Some(PRM.into()), dpop: false });
        let prm_dpop =
            Next::Renew(Challenged { scope: Some("a".into()), resource_metadata: Some(PRM.into()), dpop: true });
        let dpop_prm = challenge(&format!(r#"DPoP resource_metadata="{PRM}", scope="a""#));
        let cases: &[(StatusCode, &HeaderMap, Attempts, Next, &str)] = &[
            (StatusCode::OK, &none, fresh, Next::Relay, "success is relayed"),
            (UNAUTHORIZED, &none, fresh, renew(), "a first 401 renews"),
            (UNAUTHORIZED, &with_prm, fresh, prm.clone(), "with what its challenge says"),
            (UNAUTHORIZED, &dpop_prm, fresh, prm_dpop, "a DPoP challenge says the same, and that DPoP is taken"),
            (UNAUTHORIZED, &none, renewed, Next::Refused, "a second 401 gives up"),
            (UNAUTHORIZED, &none, stepped(MAX_STEP_UPS), renew(), "step-ups do not use up the renewal"),
            (FORBIDDEN, &scope, fresh, step_up(), "insufficient_scope steps up"),
            (FORBIDDEN, &scope, renewed, step_up(), "also after a renewal"),
            (FORBIDDEN, &scope, stepped(MAX_STEP_UPS - 1), step_up(), "up to the limit"),
            (FORBIDDEN, &scope, stepped(MAX_STEP_UPS), Next::Relay, "beyond it the 403 is relayed"),
            (FORBIDDEN, &scopeless, fresh, Next::StepUp(String::new()), "a challenge without scope"),
            (FORBIDDEN, &none, fresh, Next::Relay, "a plain 403 is the target's answer"),
            (FORBIDDEN, &other, fresh, Next::Relay, "so is another error"),
            (StatusCode::BAD_REQUEST, &scope, fresh, Next::Relay, "only a 403 steps up"),
            (StatusCode::SERVICE_UNAVAILABLE, &none, fresh, Next::Relay, "the target's errors are relayed"),
            (UNAUTHORIZED, &nonce, fresh, Next::Nonce, "a DPoP nonce challenge is resent with the nonce"),
            (
                UNAUTHORIZED,
                &nonce,
                after_nonce,
                Next::Renew(Challenged { dpop: true, ..Challenged::default() }),
                "only once; then it is a plain 401 (of a server that takes DPoP)",
            ),
        ];
        for (status, headers, attempts, want, why) in cases {
            assert_eq!(next(*status, headers, *attempts), *want, "{why}");
        }
    }

    fn outbound(flags: &[&str]) -> Outbound {
        let mut args = vec!["thv", "proxy", "s", "--target-uri", "http://127.0.0.1:1/mcp"];
        args.extend(flags);
        let inv = crate::cli::Invocation::parse_from(args).unwrap();
        let config = Config::from_invocation(&inv, &NoEnv).unwrap();
        Outbound::new(config.outbound.as_ref().unwrap(), &config.target, None).unwrap()
    }

    fn parts() -> request::Parts {
        let mut req = Request::post("/mcp").body(()).unwrap();
        req.headers_mut().insert(HOST, HeaderValue::from_static("127.0.0.1:1"));
        req.into_parts().0
    }

    /// A static token goes once, whatever the answer: there is nothing to renew.
    #[tokio::test]
    async fn a_static_token_is_sent_once() {
        let outbound = outbound(&["--remote-auth-bearer-token", "tok"]);
        let sent = RefCell::new(Vec::new());
        let resp = outbound
            .send(parts(), Bytes::from_static(b"{}"), |req: Request<Full<Bytes>>| {
                sent.borrow_mut().push(req);
                async { Ok::<_, ()>(Response::builder().status(401).body(()).unwrap()) }
            })
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let sent = sent.into_inner();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].headers()[AUTHORIZATION], "Bearer tok");
        assert_eq!(sent[0].headers()[HOST], "127.0.0.1:1");
        assert_eq!((sent[0].method(), sent[0].uri().path()), (&Method::POST, "/mcp"));
    }

    /// While the login is under way nothing is sent.
    #[tokio::test]
    async fn nothing_is_sent_without_a_token() {
        let outbound = outbound(&["--remote-auth"]);
        let calls = std::cell::Cell::new(0);
        let result = outbound
            .send(parts(), Bytes::new(), |_: Request<Full<Bytes>>| {
                calls.set(calls.get() + 1);
                async { Ok::<_, ()>(Response::new(())) }
            })
            .await;
        assert_eq!(calls.get(), 0);
        assert!(matches!(result, Err(SendError::Unavailable(Unavailable::Pending))));
    }
}
