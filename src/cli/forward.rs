//! Flags that shape what the proxy sends upstream beyond the client's request: header
//! fields for the target (ToolHive's `--remote-forward-headers*`, ToolHive #3452) and the
//! authorization request's extra query parameters (ToolHive's
//! `--remote-auth-scope-param-name`, #4712; mcp-remote's `--authorize-param`). Parsing
//! only: [`crate::config`] checks the names, reads the secrets and refuses what the proxy
//! owns. Both `thv proxy` and `thv proxy stdio` get these (through [`super::RemoteAuthArgs`]).

use clap::{ArgAction, Args};

/// Extra header fields for the target, and extra parameters of the authorization request.
#[derive(Debug, Args)]
pub(crate) struct ForwardArgs {
    /// Header to add to every request sent to the MCP server, Name=Value (repeatable; a
    /// client's field of the same name is replaced). Visible in the process list: prefer
    /// --remote-forward-headers-secret for credentials
    #[arg(long = "remote-forward-headers", value_name = "NAME=VALUE", action = ArgAction::Append,
          allow_hyphen_values = true)]
    pub(crate) headers: Vec<String>,

    /// Header whose value is read at startup from env:VAR or file:/path, Name=REF
    /// (repeatable). This thv has no secrets manager: ToolHive's secret names are not
    /// accepted, only env: and file: references
    #[arg(long = "remote-forward-headers-secret", value_name = "NAME=REF", action = ArgAction::Append)]
    pub(crate) headers_secret: Vec<String>,

    /// Name of the authorization request's query parameter that carries the scopes
    /// (e.g. user_scope for Slack); the default is scope
    #[arg(long = "remote-auth-scope-param-name", value_name = "NAME")]
    pub(crate) scope_param_name: Option<String>,

    /// Extra query parameter of the authorization request, key=value (repeatable; e.g.
    /// access_type=offline for Google, audience=https://api.example.com for Auth0)
    #[arg(long = "remote-auth-authorize-param", value_name = "KEY=VALUE", action = ArgAction::Append,
          allow_hyphen_values = true)]
    pub(crate) authorize_params: Vec<String>,
}

#[cfg(test)]
mod tests {
    use crate::cli::{Command, Invocation, ProxyCommand};

    #[test]
    fn repeat_never_split_and_take_values_that_look_like_flags() {
        let args = [
            "--remote-forward-headers",
            "X-List=a,b",
            "--remote-forward-headers=X-Dash=--not-a-flag",
            "--remote-forward-headers-secret",
            "X-Key=env:K",
            "--remote-auth-authorize-param",
            "audience=https://a.example/,x",
            "--remote-auth-authorize-param",
            "-k=v",
            "--remote-auth-scope-param-name",
            "user_scope",
        ];
        for stdio in [false, true] {
            let mut argv = if stdio { vec!["thv", "proxy", "stdio", "s"] } else { vec!["thv", "proxy", "s"] };
            argv.extend(["--target-uri", "http://x"]);
            argv.extend(args);
            let inv = Invocation::parse_from(argv).expect("parses");
            let f = match &inv.cli.command {
                Command::Proxy(ProxyCommand::Http(p)) => &p.remote_auth.forward,
                Command::Proxy(ProxyCommand::Stdio(s)) => &s.remote_auth.forward,
            };
            assert_eq!(f.headers, ["X-List=a,b", "X-Dash=--not-a-flag"]);
            assert_eq!(f.headers_secret, ["X-Key=env:K"]);
            assert_eq!(f.authorize_params, ["audience=https://a.example/,x", "-k=v"]);
            assert_eq!(f.scope_param_name.as_deref(), Some("user_scope"));
            assert!(inv.given.contains("remote-auth-authorize-param") && inv.given.contains("remote-forward-headers"));
        }
    }
}
