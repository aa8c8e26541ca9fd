//! Dynamic Client Registration (RFC 7591 §3) for a native (loopback-redirect) client.

use secrecy::SecretString;
use serde_json::{Value, json};
use url::Url;

use crate::oauth::http::{ControlClient, FetchError};

/// What the authorization server registered.
#[derive(Clone)]
pub(crate) struct Registration {
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<SecretString>,
    /// The method the server chose (RFC 7591 §3.2.1: it may differ from the request).
    pub(crate) token_endpoint_auth_method: Option<String>,
}

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistrationError {
    #[error("the authorization server refused to register a client: {0}")]
    Refused(String),
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Registers a public native client with `redirect_uri`; `scope` is what it will ask for.
pub(crate) async fn register(
    http: &ControlClient,
    endpoint: &Url,
    redirect_uri: &str,
    scope: Option<&str>,
) -> Result<Registration, RegistrationError> {
    let mut body = json!({
        "client_name": "ToolHive MCP Client (thv proxy)",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        // MCP 2026-07-28 Client Registration §Application Type: a loopback client is native.
        "application_type": "native",
    });
    if let Some(scope) = scope {
        body["scope"] = json!(scope);
    }
    let answer = http.post_json(endpoint, &body).await?;
    let text = |k: &str| answer.body.get(k).and_then(Value::as_str).map(str::to_owned);
    if !(200..300).contains(&answer.status) {
        let why = match (text("error"), text("error_description")) {
            (Some(e), Some(d)) => format!("{e}: {}", d.chars().take(200).collect::<String>()),
            (Some(e), None) => e,
            _ => format!("HTTP {}", answer.status),
        };
        return Err(RegistrationError::Refused(why));
    }
    let client_id = text("client_id")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| RegistrationError::Refused("no client_id in the answer".to_owned()))?;
    Ok(Registration {
        client_id,
        client_secret: text("client_secret").filter(|s| !s.is_empty()).map(SecretString::from),
        token_endpoint_auth_method: text("token_endpoint_auth_method"),
    })
}
