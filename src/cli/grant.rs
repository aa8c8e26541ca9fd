//! Flags that choose how the proxy obtains tokens from the target's authorization server
//! (`--remote-auth-grant-type` and the credentials the non-browser grants need). Parsing
//! only: [`crate::config`] relates them to the other `--remote-auth*` flags and reads the
//! files.

use clap::Args;
use clap::builder::PossibleValuesParser;

/// The OAuth grant and its credentials; flattened into [`super::RemoteAuthArgs`].
#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    /// OAuth grant used to obtain tokens: authorization_code (a user at a browser),
    /// client_credentials (the client's own credentials: --remote-auth-client-id with a
    /// secret or --remote-auth-client-assertion-key-file), jwt-bearer (the JWT in
    /// --remote-auth-assertion-file, e.g. a Kubernetes service account token)
    #[arg(long, value_name = "GRANT", default_value = "authorization_code",
          value_parser = PossibleValuesParser::new(["authorization_code", "client_credentials", "jwt-bearer"]))]
    pub(crate) remote_auth_grant_type: String,

    /// PEM private key (PKCS#8, SEC1 or PKCS#1) for private_key_jwt client authentication
    /// (RFC 7523): every token request carries a fresh signed assertion instead of a secret
    #[arg(long, value_name = "PATH")]
    pub(crate) remote_auth_client_assertion_key_file: Option<String>,

    /// JWS algorithm of the client assertions (default: from the key: ES256, ES384,
    /// RS256 or EdDSA; PS256 for an RSA key)
    #[arg(long, value_name = "ALG",
          value_parser = PossibleValuesParser::new(crate::oauth::assertion::SigningAlg::NAMES))]
    pub(crate) remote_auth_client_assertion_alg: Option<String>,

    /// File holding the JWT presented in the jwt-bearer grant; read again for every token
    /// request, so a rotated token (Kubernetes projected token) is picked up
    #[arg(long, value_name = "PATH")]
    pub(crate) remote_auth_assertion_file: Option<String>,
}
