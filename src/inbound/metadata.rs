//! The proxy's OAuth 2.0 Protected Resource Metadata (RFC 9728) and the challenges that
//! point to it (RFC 9728 §5.1), so MCP clients discover where to log in
//! (MCP 2025-11-25 Authorization §Authorization Server Location).
//!
//! Without `--resource-url`, the resource is the proxy's own MCP endpoint *as the client
//! addressed it* (`http://{Host}{path}`): a client that connected to `localhost` must see
//! `localhost` in `resource`, or SDKs refuse the metadata (ToolHive #4124). The Host was
//! already checked against the proxy's own names on loopback binds. Public deployments
//! behind TLS termination should set `--resource-url`.

use serde_json::json;
use url::Url;

use crate::oauth::challenge::{BearerChallenge, BearerError};

/// Path of the metadata document (RFC 9728 §3).
pub(crate) const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// What the proxy says about itself as a protected resource.
#[derive(Debug, Clone)]
pub(crate) struct ProtectedResource {
    resource_url: Option<Url>,
    endpoint_path: String,
    issuer: Option<String>,
    scopes: Vec<String>,
    resource_name: String,
}

impl ProtectedResource {
    pub(crate) fn new(
        resource_url: Option<Url>,
        endpoint_path: &str,
        issuer: Option<String>,
        scopes: Vec<String>,
        resource_name: String,
    ) -> Self {
        ProtectedResource { resource_url, endpoint_path: endpoint_path.to_owned(), issuer, scopes, resource_name }
    }

    /// The resource identifier for a client that addressed the proxy as `host`.
    pub(crate) fn resource(&self, host: &str) -> String {
        match &self.resource_url {
            Some(url) => url.as_str().to_owned(),
            None => format!("http://{host}{}", self.endpoint_path),
        }
    }

    /// Where the metadata document for that resource lives: the well-known path inserted
    /// before the resource's path (RFC 9728 §3.1).
    pub(crate) fn metadata_url(&self, host: &str) -> String {
        match &self.resource_url {
            Some(url) => {
                let origin = url.origin().ascii_serialization();
                format!("{origin}{WELL_KNOWN}{}", url.path().trim_end_matches('/'))
            }
            None => format!("http://{host}{WELL_KNOWN}{}", self.endpoint_path.trim_end_matches('/')),
        }
    }

    /// Whether `path` is one of the metadata paths this proxy serves: the root document
    /// and the one for its MCP endpoint.
    pub(crate) fn serves(&self, path: &str) -> bool {
        let rest = path.strip_prefix(WELL_KNOWN).unwrap_or("-");
        let own = match &self.resource_url {
            Some(url) => url.path().trim_end_matches('/').to_owned(),
            None => self.endpoint_path.trim_end_matches('/').to_owned(),
        };
        rest.is_empty() || rest == "/" || rest == own
    }

    /// The JSON document (RFC 9728 §2); empty arrays are left out rather than sent.
    pub(crate) fn document(&self, host: &str) -> String {
        let mut doc = json!({
            "resource": self.resource(host),
            "bearer_methods_supported": ["header"],
            "resource_name": self.resource_name,
        });
        if let Some(issuer) = &self.issuer {
            doc["authorization_servers"] = json!([issuer]);
        }
        if !self.scopes.is_empty() {
            doc["scopes_supported"] = json!(self.scopes);
        }
        doc.to_string()
    }

    /// The `WWW-Authenticate` value for a refusal; `error` is `None` when no credentials
    /// were presented (RFC 6750 §3.1: then no error code is sent).
    pub(crate) fn challenge(&self, host: &str, error: Option<BearerError>, description: Option<&str>) -> String {
        let resource = self.resource(host);
        let metadata = self.metadata_url(host);
        let scope = self.scopes.join(" ");
        BearerChallenge {
            realm: Some(self.issuer.as_deref().unwrap_or(&resource)),
            error,
            error_description: description,
            scope: (!scope.is_empty() && matches!(error, None | Some(BearerError::InsufficientScope)))
                .then_some(scope.as_str()),
            resource_metadata: Some(&metadata),
        }
        .render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn derived() -> ProtectedResource {
        ProtectedResource::new(
            None,
            "/mcp",
            Some("http://127.0.0.1:9000".into()),
            vec!["mcp:tools".into()],
            "srv".into(),
        )
    }

    #[test]
    fn derived_resource_follows_the_host() {
        let p = derived();
        assert_eq!(p.resource("localhost:8080"), "http://localhost:8080/mcp");
        assert_eq!(p.metadata_url("localhost:8080"), "http://localhost:8080/.well-known/oauth-protected-resource/mcp");
        let doc: serde_json::Value = serde_json::from_str(&p.document("127.0.0.1:8080")).unwrap();
        assert_eq!(doc["resource"], "http://127.0.0.1:8080/mcp");
        assert_eq!(doc["authorization_servers"], json!(["http://127.0.0.1:9000"]));
        assert_eq!(doc["scopes_supported"], json!(["mcp:tools"]));
        assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
        assert!(p.serves("/.well-known/oauth-protected-resource"));
        assert!(p.serves("/.well-known/oauth-protected-resource/mcp"));
        assert!(!p.serves("/.well-known/oauth-protected-resource/other"));
    }

    #[test]
    fn configured_resource_wins() {
        let p = ProtectedResource::new(
            Some(Url::parse("https://mcp.example.com/v1/mcp").unwrap()),
            "/mcp",
            None,
            vec![],
            "srv".into(),
        );
        assert_eq!(p.resource("localhost:1"), "https://mcp.example.com/v1/mcp");
        assert_eq!(
            p.metadata_url("localhost:1"),
            "https://mcp.example.com/.well-known/oauth-protected-resource/v1/mcp"
        );
        assert!(p.serves("/.well-known/oauth-protected-resource/v1/mcp"));
        let doc: serde_json::Value = serde_json::from_str(&p.document("x")).unwrap();
        assert!(doc.get("authorization_servers").is_none() && doc.get("scopes_supported").is_none(), "no empty arrays");
    }

    #[test]
    fn challenges() {
        let p = derived();
        assert_eq!(
            p.challenge("127.0.0.1:1", None, None),
            r#"Bearer realm="http://127.0.0.1:9000", scope="mcp:tools", resource_metadata="http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp""#
        );
        let c = p.challenge("127.0.0.1:1", Some(BearerError::InvalidToken), Some("the token has expired"));
        assert!(c.contains(r#"error="invalid_token", error_description="the token has expired""#), "{c}");
        assert!(!c.contains("scope="), "{c}");
    }
}
