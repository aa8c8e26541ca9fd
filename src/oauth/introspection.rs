//! OAuth 2.0 Token Introspection (RFC 7662) and Google's `tokeninfo` variant, which
//! ToolHive supports: a request, and the answer reduced to what a resource server checks.

use serde_json::Value;
use url::Url;

use crate::oauth::http::{ControlClient, FetchError, redact};

/// Google's token info endpoint; it speaks its own dialect (no `active`, string `exp`).
pub(crate) const GOOGLE_TOKENINFO: &str = "https://oauth2.googleapis.com/tokeninfo";

/// What the authorization server said about a token.
#[derive(Debug, Clone, Default)]
pub(crate) struct Introspected {
    pub(crate) active: bool,
    pub(crate) sub: Option<String>,
    pub(crate) client_id: Option<String>,
    pub(crate) iss: Option<String>,
    /// `aud` as a list (RFC 7662 allows a string or an array).
    pub(crate) aud: Vec<String>,
    pub(crate) exp: Option<u64>,
    pub(crate) nbf: Option<u64>,
    /// Space-separated `scope`.
    pub(crate) scope: Option<String>,
    /// A member had the wrong JSON type (`aud: 12345`, `iss: 7`, `exp: "soon"`): the
    /// answer cannot be trusted.
    pub(crate) malformed: bool,
    /// The whole answer, for a policy that reads claims (an introspection answer is the
    /// token's claims, RFC 7662 §2.2).
    pub(crate) claims: serde_json::Map<String, Value>,
}

impl Introspected {
    /// Reads an RFC 7662 §2.2 answer (or a Google tokeninfo answer, where every token
    /// described is active and numbers may be strings).
    pub(crate) fn from_json(body: &Value, google: bool) -> Introspected {
        let mut malformed = false;
        let mut text = |k: &str| match body.get(k) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                malformed = true;
                None
            }
        };
        let (sub, client_id, iss, scope, azp) =
            (text("sub"), text("client_id"), text("iss"), text("scope"), text("azp"));
        // NumericDate; Google sends numbers as strings, which are accepted when they parse.
        let mut number = |k: &str| match body.get(k) {
            None | Some(Value::Null) => None,
            Some(v) => {
                let n = v
                    .as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
                malformed |= n.is_none();
                n
            }
        };
        let (exp, nbf) = (number("exp"), number("nbf"));
        let aud = match body.get("aud") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
                a.iter().filter_map(Value::as_str).map(str::to_owned).collect()
            }
            Some(_) => {
                malformed = true;
                Vec::new()
            }
        };
        let active = if google {
            body.is_object() && body.get("error").is_none()
        } else {
            body.get("active") == Some(&Value::Bool(true))
        };
        Introspected {
            active,
            sub,
            client_id: client_id.or_else(|| azp.filter(|_| google)),
            iss,
            aud,
            exp,
            nbf,
            scope,
            malformed,
            claims: body.as_object().cloned().unwrap_or_default(),
        }
    }
}

/// Why introspection gave no verdict. The caller must fail closed: none of these says
/// anything about the token (RFC 7662 §4).
#[derive(Debug, thiserror::Error)]
pub(crate) enum IntrospectionError {
    /// Not reached, or it answered something other than a verdict.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// It refused the caller's own client authentication (RFC 7662 §2.1: 401, or
    /// `invalid_client`), so it never judged the token.
    #[error("{url} refused the introspection client's credentials (HTTP {status})")]
    ClientRefused { url: String, status: u16 },
}

/// Asks `endpoint` about `token`. A verdict is a 200 with JSON, Google's 400 for an
/// invalid token, or any answer whose JSON says `"active": false` (some servers, the MCP
/// TypeScript SDK's demo among them, send that with a 401). Every other answer is an
/// error, never a verdict on the token.
pub(crate) async fn introspect(
    client: &ControlClient,
    endpoint: &Url,
    token: &str,
    client_auth: Option<(&str, &str)>,
    google: bool,
) -> Result<Introspected, IntrospectionError> {
    let answer = if google {
        client.post_form(endpoint, &[("access_token", token)], None).await?
    } else {
        client.post_form(endpoint, &[("token", token), ("token_type_hint", "access_token")], client_auth).await?
    };
    let says_inactive = answer.body.get("active") == Some(&serde_json::Value::Bool(false));
    match answer.status {
        200 => Ok(Introspected::from_json(&answer.body, google)),
        400 if google => Ok(Introspected::default()),
        _ if says_inactive => Ok(Introspected::default()),
        status @ (401 | 403) => Err(IntrospectionError::ClientRefused { url: redact(endpoint), status }),
        400 if answer.body.get("error").and_then(serde_json::Value::as_str) == Some("invalid_client") => {
            Err(IntrospectionError::ClientRefused { url: redact(endpoint), status: 400 })
        }
        status => Err(FetchError::BadAnswer {
            url: redact(endpoint),
            what: format!("HTTP {status} to an introspection request"),
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rfc7662_answers() {
        let i = Introspected::from_json(
            &json!({"active": true, "sub": "u", "aud": ["a", "b"], "exp": 10, "scope": "x y"}),
            false,
        );
        assert!(i.active);
        assert_eq!(i.aud, ["a", "b"]);
        assert_eq!(i.exp, Some(10));
        assert!(!Introspected::from_json(&json!({"active": false}), false).active);
        assert!(!Introspected::from_json(&json!({"active": "true"}), false).active, "only a JSON true is active");
        let i = Introspected::from_json(&json!({"active": true, "client_id": "svc", "aud": "one"}), false);
        assert_eq!((i.sub, i.client_id.as_deref(), i.aud), (None, Some("svc"), vec!["one".to_owned()]));
    }

    #[test]
    fn wrongly_typed_members_make_the_answer_untrustworthy() {
        for body in [
            json!({"active": true, "aud": 12345}),
            json!({"active": true, "aud": [1, 2]}),
            json!({"active": true, "iss": 7}),
            json!({"active": true, "exp": "soon"}),
        ] {
            assert!(Introspected::from_json(&body, false).malformed, "{body}");
        }
        assert!(!Introspected::from_json(&json!({"active": true, "exp": 1.5, "aud": ["a"]}), false).malformed);
    }

    #[test]
    fn google_tokeninfo_answers() {
        let i = Introspected::from_json(&json!({"aud": "cid", "exp": "1700000000", "azp": "cid", "sub": "123"}), true);
        assert!(i.active);
        assert_eq!(i.exp, Some(1_700_000_000));
        assert!(!Introspected::from_json(&json!({"error": "invalid_token"}), true).active);
    }
}
