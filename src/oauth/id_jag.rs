//! RFC 8693 token exchange ([`super::exchange`]) for an Identity Assertion JWT Authorization Grant (ID-JAG;
//! draft-ietf-oauth-identity-assertion-authz-grant §4.3, MCP SEP-990 Enterprise-Managed
//! Authorization): the enterprise IdP trades the user's ID token for an ID-JAG meant for
//! one authorization server and one resource, which the client then presents there as a
//! JWT bearer grant (RFC 7523 §2.1).
//!
//! The client cannot verify the ID-JAG's signature (it is for the authorization server),
//! but it reads the claims before sending it on (ToolHive #5716): an ID-JAG for another
//! audience, another resource or another client would hand the user's identity to the
//! wrong party, or fail there with a less useful error.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::oauth::exchange::{ExchangeRequest, ID_TOKEN};
use crate::oauth::http::ControlClient;
use crate::oauth::token::{self, TokenEndpoint, TokenError};

/// `requested_token_type` and `issued_token_type` of an ID-JAG.
const ID_JAG_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id-jag";
/// The JOSE `typ` of an ID-JAG.
const ID_JAG_TYP: &str = "oauth-id-jag+jwt";

/// Why the IdP's answer is no usable ID-JAG. No variant carries the token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum IdJagError {
    /// The IdP refused the exchange, or could not be asked.
    #[error("the identity provider's token exchange failed: {0}")]
    Exchange(#[source] TokenError),
    #[error("the identity provider issued {0:?}, not an ID-JAG ({ID_JAG_TOKEN_TYPE})")]
    WrongTokenType(String),
    #[error("the identity provider's ID-JAG is not a JWT")]
    Malformed,
    #[error("the identity provider's ID-JAG has typ {0:?}, not {ID_JAG_TYP:?}")]
    WrongTyp(String),
    /// A claim names another party than the one the exchange asked for.
    #[error("the identity provider's ID-JAG is for {claim} {found:?}, not {wanted:?}; not presenting it")]
    Mismatch { claim: &'static str, found: String, wanted: String },
}

/// What the ID-JAG must be for.
pub(crate) struct IdJagRequest<'a> {
    /// The authorization server's issuer (`audience` of the exchange, `aud` of the ID-JAG).
    pub(crate) audience: &'a str,
    /// The MCP server (RFC 8707 `resource`, the ID-JAG's `resource`).
    pub(crate) resource: &'a str,
    pub(crate) scope: Option<&'a str>,
    /// The client that will present the ID-JAG (its `client_id` claim, when present).
    pub(crate) client_id: &'a str,
}

/// Exchanges the user's ID token at the IdP's token endpoint (`idp`, with the client's
/// IdP credentials) for an ID-JAG, and checks its claims against `want`.
pub(crate) async fn exchange_id_token_for_id_jag(
    idp: &TokenEndpoint,
    http: &ControlClient,
    id_token: &SecretString,
    want: &IdJagRequest<'_>,
) -> Result<SecretString, IdJagError> {
    let request = ExchangeRequest {
        subject_token: id_token.expose_secret(),
        subject_token_type: ID_TOKEN,
        requested_token_type: ID_JAG_TOKEN_TYPE,
        audience: Some(want.audience),
        resource: Some(want.resource),
        scope: want.scope,
    };
    // Not `exchange::exchange`: an ID-JAG is no bearer token (its `token_type` is `N_A`,
    // RFC 8693 §2.2.1), so only the refusal and the issued type are read here.
    let answer = idp.post(http, request.form()).await.map_err(IdJagError::Exchange)?;
    token::refusal(&answer).map_err(IdJagError::Exchange)?;
    let body = &answer.body;
    let issued = body.get("issued_token_type").and_then(Value::as_str).unwrap_or_default();
    if issued != ID_JAG_TOKEN_TYPE {
        return Err(IdJagError::WrongTokenType(issued.to_owned()));
    }
    let jag = body
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or(IdJagError::Exchange(TokenError::NoAccessToken))?;
    check_id_jag(jag, want)?;
    Ok(SecretString::from(jag.to_owned()))
}

/// Checks an ID-JAG's `typ`, `aud`, `resource` and `client_id` (draft §3.1) against `want`.
pub(crate) fn check_id_jag(jag: &str, want: &IdJagRequest<'_>) -> Result<(), IdJagError> {
    let mut parts = jag.split('.');
    let (Some(header), Some(claims), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(IdJagError::Malformed);
    };
    let decode = |part: &str| -> Result<Value, IdJagError> {
        let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| IdJagError::Malformed)?;
        serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object).ok_or(IdJagError::Malformed)
    };
    let (header, claims) = (decode(header)?, decode(claims)?);
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or_default();
    if !typ.eq_ignore_ascii_case(ID_JAG_TYP) {
        return Err(IdJagError::WrongTyp(typ.to_owned()));
    }
    // `aud` may be a string or an array (RFC 7519 §4.1.3); either must name the issuer.
    let named = |claim: &str| -> Vec<String> {
        match claims.get(claim) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    };
    let mismatch = |claim: &'static str, wanted: &str| {
        let found = named(claim);
        (!found.iter().any(|f| f == wanted)).then(|| IdJagError::Mismatch {
            claim,
            found: found.join(" "),
            wanted: wanted.to_owned(),
        })
    };
    if let Some(e) = mismatch("aud", want.audience).or_else(|| mismatch("resource", want.resource)) {
        return Err(e);
    }
    // `client_id` is required by the draft, but an IdP that leaves it out leaves the
    // check to the authorization server.
    if claims.get("client_id").is_some()
        && let Some(e) = mismatch("client_id", want.client_id)
    {
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(header: Value, claims: Value) -> String {
        let b = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!("{}.{}.c2ln", b(header), b(claims))
    }

    const WANT: IdJagRequest<'static> = IdJagRequest {
        audience: "https://as.example",
        resource: "https://mcp.example/mcp",
        scope: None,
        client_id: "mcp-client",
    };

    #[test]
    fn id_jag_claims_are_checked_before_use() {
        let header = serde_json::json!({"alg": "ES256", "typ": "oauth-id-jag+jwt"});
        let good = serde_json::json!({"aud": "https://as.example", "resource": "https://mcp.example/mcp", "client_id": "mcp-client", "sub": "u"});
        check_id_jag(&jwt(header.clone(), good.clone()), &WANT).unwrap();
        let mut array_aud = good.clone();
        array_aud["aud"] = serde_json::json!(["https://other.example", "https://as.example"]);
        check_id_jag(&jwt(header.clone(), array_aud), &WANT).unwrap();
        let mut no_client = good.clone();
        no_client.as_object_mut().unwrap().remove("client_id");
        check_id_jag(&jwt(header.clone(), no_client), &WANT).unwrap();

        for (claim, value) in [
            ("aud", serde_json::json!("https://evil.example")),
            ("resource", serde_json::json!("https://other.example/mcp")),
            ("client_id", serde_json::json!("someone-else")),
        ] {
            let mut bad = good.clone();
            bad[claim] = value;
            let err = check_id_jag(&jwt(header.clone(), bad), &WANT).unwrap_err();
            assert!(matches!(err, IdJagError::Mismatch { claim: c, .. } if c == claim), "{claim}: {err}");
        }
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("resource");
        assert!(matches!(
            check_id_jag(&jwt(header, missing), &WANT),
            Err(IdJagError::Mismatch { claim: "resource", .. })
        ));
        let err = check_id_jag(&jwt(serde_json::json!({"alg": "ES256", "typ": "JWT"}), good), &WANT).unwrap_err();
        assert!(matches!(err, IdJagError::WrongTyp(_)));
        assert!(matches!(check_id_jag("not-a-jwt", &WANT), Err(IdJagError::Malformed)));
        assert!(matches!(check_id_jag("a.b.c", &WANT), Err(IdJagError::Malformed)));
    }
}
