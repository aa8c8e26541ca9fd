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
    /// --remote-auth-assertion-file, e.g. a Kubernetes service account token), id-jag (the
    /// user's ID token exchanged at the enterprise IdP for an ID-JAG, presented as a
    /// jwt-bearer grant: --remote-auth-idp-* and --remote-auth-subject-token-file),
    /// device_code (RFC 8628: the proxy prints a URL and a code, and a user approves at a
    /// browser anywhere; no callback listener; --remote-auth-client-id)
    #[arg(long, value_name = "GRANT", default_value = "authorization_code",
          value_parser = PossibleValuesParser::new(["authorization_code", "client_credentials", "jwt-bearer", "id-jag", "device_code"]))]
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

    /// Token endpoint of the enterprise IdP that exchanges the ID token for an ID-JAG
    /// (RFC 8693; id-jag grant)
    #[arg(long, value_name = "URL")]
    pub(crate) remote_auth_idp_token_url: Option<String>,

    /// The proxy's client ID at the enterprise IdP (id-jag grant)
    #[arg(long, value_name = "ID", allow_hyphen_values = true)]
    pub(crate) remote_auth_idp_client_id: Option<String>,

    /// The proxy's client secret at the enterprise IdP (env TOOLHIVE_REMOTE_AUTH_IDP_CLIENT_SECRET)
    #[arg(
        long,
        value_name = "SECRET",
        conflicts_with = "remote_auth_idp_client_secret_file",
        allow_hyphen_values = true
    )]
    pub(crate) remote_auth_idp_client_secret: Option<String>,

    /// Path to a file containing the client secret at the enterprise IdP
    #[arg(long, value_name = "PATH")]
    pub(crate) remote_auth_idp_client_secret_file: Option<String>,

    /// File holding the user's ID token from the enterprise IdP (id-jag grant); read
    /// again for every exchange
    #[arg(long, value_name = "PATH")]
    pub(crate) remote_auth_subject_token_file: Option<String>,

    /// DPoP (RFC 9449): bind the tokens to a key of the proxy's and prove it on every
    /// request. auto: when the authorization server's metadata lists an algorithm the
    /// proxy signs with (ES256) in dpop_signing_alg_values_supported and the MCP server
    /// takes DPoP (its 401 offers the DPoP scheme, or its metadata lists DPoP); always:
    /// refuse to log in to a server that does not; never: plain bearer tokens
    #[arg(long, value_name = "MODE", default_value = "auto",
          value_parser = PossibleValuesParser::new(["auto", "always", "never"]))]
    pub(crate) remote_auth_dpop: String,
}
