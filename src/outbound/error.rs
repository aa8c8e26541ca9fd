//! Why outgoing authentication could not be set up, and why a login failed. A login's
//! error becomes the reason shown in the 503 that requests get meanwhile, so each message
//! is a sentence for the user; the cause stays available as the error's source.

use crate::config::AssertionFileError;
use crate::oauth::device::DeviceError;
use crate::oauth::id_jag::IdJagError;
use crate::oauth::registration::RegistrationError;
use crate::oauth::token::TokenError;
use crate::outbound::callback::CallbackError;
use crate::outbound::discover::DiscoveryError;

/// Why [`Outbound::new`](crate::outbound::Outbound::new) failed (a startup error of the
/// remote-auth flags).
#[derive(Debug, thiserror::Error)]
pub enum OutboundSetupError {
    /// `--remote-auth-bearer-token` (or its file) cannot be sent as a header value.
    #[error("the static bearer token contains characters not allowed in a header")]
    BearerHeader(#[source] http::header::InvalidHeaderValue),
    /// The target is not a URL the OAuth client can use.
    #[error("the target URL cannot be used for the login ({0})")]
    TargetUrl(#[from] url::ParseError),
    /// The HTTP client for discovery and the token endpoint cannot be built.
    #[error("the HTTP client for the login {0}")]
    HttpClient(#[from] crate::oauth::http::ClientSetupError),
}

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoginError {
    /// The target did not ask for authentication.
    #[error("the MCP server did not ask for authentication")]
    NotRequired,
    #[error("discovery failed: {0}")]
    Discovery(#[from] DiscoveryError),
    /// No pre-registered client, no Client ID Metadata Document, and no registration
    /// endpoint (MCP 2025-11-25 §Client Registration Approaches).
    #[error(
        "the authorization server offers no dynamic client registration; register a client with it and pass --remote-auth-client-id (and --remote-auth-client-secret-file for a confidential client)"
    )]
    NoRegistration,
    #[error("client registration failed: {0}")]
    Registration(#[source] RegistrationError),
    #[error(transparent)]
    Callback(#[from] CallbackError),
    #[error(transparent)]
    Token(#[from] TokenError),
    /// RFC 8414 §2 `grant_types_supported` lists grants and not this one; no other grant
    /// is tried in its place.
    #[error(
        "the authorization server {server} does not support the {grant} grant (its grant_types_supported: {listed}); not trying another grant"
    )]
    GrantNotSupported { grant: &'static str, server: String, listed: String },
    /// The authorization server's metadata rules out the configured key's client
    /// authentication (RFC 8414 §2 `token_endpoint_auth_methods_supported`,
    /// `token_endpoint_auth_signing_alg_values_supported`).
    #[error(
        "the authorization server {server} does not accept {what} (it lists {listed}); change --remote-auth-client-assertion-key-file or --remote-auth-client-assertion-alg"
    )]
    ClientAuthNotSupported { server: String, what: String, listed: String },
    /// `--remote-auth-dpop always` and a server whose metadata lists no DPoP algorithm the
    /// proxy signs with (RFC 9449 §5.1 `dpop_signing_alg_values_supported`).
    #[error(
        "the authorization server {server} does not support DPoP with ES256 (its dpop_signing_alg_values_supported: {listed}); --remote-auth-dpop always refuses to log in without it (use auto or never)"
    )]
    DpopNotSupported { server: String, listed: String },
    /// `--remote-auth-assertion-file` (or `--remote-auth-subject-token-file`) gave no JWT.
    #[error("no token to present: {0}")]
    AssertionFile(#[from] AssertionFileError),
    /// The enterprise IdP gave no usable ID-JAG.
    #[error(transparent)]
    IdJag(#[from] IdJagError),
    /// `--remote-auth-grant-type device_code` with a server whose metadata has no
    /// `device_authorization_endpoint` (RFC 8628 §4).
    #[error(
        "the authorization server {server} has no device authorization endpoint (no device_authorization_endpoint in its metadata, RFC 8628 §4), so --remote-auth-grant-type device_code cannot log in there"
    )]
    NoDeviceEndpoint { server: String },
    /// The device flow ended without tokens.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Nobody approved the device login within `--remote-auth-timeout`.
    #[error("the login was not approved within {0:?} (--remote-auth-timeout)")]
    DeviceTimedOut(std::time::Duration),
}
