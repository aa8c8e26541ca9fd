//! MCP-aware policy settings (`--authz-config`, `--tools`, `--tools-override`,
//! `--enable-audit`, `--audit-config`): every file is read and checked here, so that a
//! policy that does not parse stops the proxy at startup, naming the flag, the file and
//! the line.

use std::path::Path;
use std::sync::Arc;

use super::ConfigError;
use crate::cli::PolicyArgs;
use crate::policy::audit::{self, AuditConfig, Transport};
use crate::policy::authz::{self, Authorizer};
use crate::policy::tools::{self, ToolView};

/// The validated policy: what of it is configured.
#[derive(Clone)]
pub(crate) struct PolicyConfig {
    pub(crate) authz: Option<Arc<Authorizer>>,
    pub(crate) tools: Option<Arc<ToolView>>,
    pub(crate) audit: Option<Arc<AuditConfig>>,
}

impl std::fmt::Debug for PolicyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyConfig")
            .field("authz", &self.authz.is_some())
            .field("tools", &self.tools.is_some())
            .field("audit", &self.audit.is_some())
            .finish()
    }
}

/// Said at startup when policies are evaluated for clients nobody authenticated.
pub(crate) const ANONYMOUS_WARNING: &str = "--authz-config without incoming authentication (--oidc-issuer/--oidc-jwks-url/--oidc-introspection-url): every client is Client::\"anonymous\" with no claims";

/// The policy for `args`; `None` when none of its flags is given (it then costs nothing).
pub(crate) fn policy_config(
    args: &PolicyArgs,
    server_name: &str,
    legacy_sse: bool,
    authenticated: bool,
    warnings: &mut Vec<&'static str>,
) -> Result<Option<PolicyConfig>, ConfigError> {
    let authz = match super::non_empty(&args.authz_config) {
        Some(path) => {
            let authorizer = authz::load(Path::new(path))
                .map_err(|e| ConfigError::new("--authz-config", e.to_string()))?
                .with_server_name(server_name);
            if !authenticated {
                warnings.push(ANONYMOUS_WARNING);
            }
            Some(Arc::new(authorizer))
        }
        None => None,
    };
    let allow: Vec<String> = args.tools.iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
    if !args.tools.is_empty() && allow.is_empty() {
        return Err(ConfigError::new("--tools", "names no tool; give the server's tool names, e.g. --tools echo,add"));
    }
    let overrides = match super::non_empty(&args.tools_override) {
        Some(path) => tools::load_overrides(Path::new(path)).map_err(|e| ConfigError::new("--tools-override", e))?,
        None => Default::default(),
    };
    let view = ToolView::new(&allow, overrides).map_err(|e| {
        let flag = if args.tools_override.is_some() { "--tools-override" } else { "--tools" };
        ConfigError::new(flag, e)
    })?;
    let tools = (!view.is_identity()).then(|| Arc::new(view));
    let audit = match (args.enable_audit, super::non_empty(&args.audit_config)) {
        (_, Some(path)) => {
            Some(audit::load(Some(Path::new(path))).map_err(|e| ConfigError::new("--audit-config", e.to_string()))?)
        }
        (true, None) => Some(audit::load(None).map_err(|e| ConfigError::new("--enable-audit", e.to_string()))?),
        (false, None) => None,
    };
    let audit = audit.map(|mut audit| {
        // As `thv run` does: the server is the component when the file names none.
        if audit.component.is_empty() {
            audit.component = server_name.to_owned();
        }
        // ToolHive's `transport` in each event: the legacy HTTP+SSE transport or not.
        audit.transport = if legacy_sse { Transport::Sse } else { Transport::StreamableHttp };
        audit
    });
    if authz.is_none() && tools.is_none() && audit.is_none() {
        return Ok(None);
    }
    Ok(Some(PolicyConfig { authz, tools, audit: audit.map(Arc::new) }))
}
