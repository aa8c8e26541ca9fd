//! Token exchange flags (`--token-exchange-*`), as ToolHive's `thv proxy` names them
//! (`cmd/thv/app/auth_flags.go`): RFC 8693 exchange of each validated incoming token for
//! one the target accepts. Parsing only: [`crate::config`] checks the values, reads the
//! secret's file and environment variable, and relates these flags to `--oidc-*` and
//! `--remote-auth*`.

use clap::{ArgAction, Args};

/// RFC 8693 token exchange of the incoming token.
#[derive(Debug, Args)]
pub(crate) struct TokenExchangeArgs {
    /// OAuth 2.0 token exchange endpoint URL (enables token exchange when provided; needs
    /// incoming authentication, --oidc-*)
    #[arg(long, value_name = "URL")]
    pub(crate) token_exchange_url: Option<String>,

    /// OAuth client ID for token exchange operations
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    pub(crate) token_exchange_client_id: Option<String>,

    /// OAuth client secret for token exchange operations (env
    /// TOOLHIVE_TOKEN_EXCHANGE_CLIENT_SECRET)
    #[arg(
        long,
        value_name = "SECRET",
        conflicts_with = "token_exchange_client_secret_file",
        allow_hyphen_values = true
    )]
    pub(crate) token_exchange_client_secret: Option<String>,

    /// Path to file containing OAuth client secret for token exchange (alternative to
    /// --token-exchange-client-secret)
    #[arg(long, value_name = "PATH")]
    pub(crate) token_exchange_client_secret_file: Option<String>,

    /// Target audience for exchanged tokens
    #[arg(long, value_name = "AUDIENCE", allow_hyphen_values = true)]
    pub(crate) token_exchange_audience: Option<String>,

    /// Scopes to request for exchanged tokens (comma-separated, repeatable)
    #[arg(long, value_name = "SCOPES", value_delimiter = ',', action = ArgAction::Append)]
    pub(crate) token_exchange_scopes: Vec<String>,

    /// Type of subject token to exchange. Accepts: access_token (default), id_token
    /// (required for Google STS), jwt, or the RFC 8693 URN
    #[arg(long, value_name = "TYPE")]
    pub(crate) token_exchange_subject_token_type: Option<String>,

    /// Custom header name for injecting exchanged token (default: replaces Authorization
    /// header); the value is `Bearer <token>` either way
    #[arg(long, value_name = "NAME")]
    pub(crate) token_exchange_header_name: Option<String>,
}
