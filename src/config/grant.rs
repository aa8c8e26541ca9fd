//! Which OAuth grant the proxy uses to get tokens from the target's authorization server
//! (`--remote-auth-grant-type`), and the credentials each grant needs: the cross-flag
//! rules of the authorization code flow (RFC 6749 §4.1, the default), the client
//! credentials grant (RFC 6749 §4.4; MCP SEP-1046) and the JWT bearer grant (RFC 7523
//! §2.1; MCP SEP-1933 workload identity), the ID-JAG grant (RFC 8693 exchange at the
//! enterprise IdP, then a JWT bearer grant; MCP SEP-990), the device authorization grant
//! (RFC 8628), and the `private_key_jwt` client key (RFC 7523 §2.2) any of them may
//! authenticate with.

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::SecretString;
use url::Url;

use super::{ConfigError, Environment, non_empty, resolve_secret, url_refused};
use crate::cli::GrantArgs;
use crate::oauth::assertion::{AssertionKey, SigningAlg};
use crate::oauth::device::DEVICE_CODE_GRANT;
use crate::oauth::token::JWT_BEARER_GRANT;

/// How tokens are obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Grant {
    /// A user logs in at a browser (PKCE, loopback callback).
    AuthorizationCode,
    /// A user approves at a browser, anywhere, the code the proxy shows (RFC 8628): no
    /// redirect, no callback; the proxy polls the token endpoint.
    DeviceCode,
    /// No one is present: no browser, no callback; a token can be had again at any time.
    Unattended(Unattended),
}

/// The grants without a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Unattended {
    /// The client's own credentials are the grant.
    ClientCredentials,
    /// The JWT in this file is the grant; the file is read again for every token request.
    JwtBearer { assertion_file: PathBuf },
    /// The ID token in a file, exchanged at the enterprise IdP for an ID-JAG, which is the
    /// JWT bearer grant at the MCP server's authorization server.
    IdJag(Box<IdJagConfig>),
}

/// Where and how the ID-JAG is obtained.
#[derive(Clone)]
pub(crate) struct IdJagConfig {
    /// `--remote-auth-idp-token-url`.
    pub(crate) token_url: Url,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<SecretString>,
    /// `--remote-auth-subject-token-file`: the user's ID token, read for every exchange.
    pub(crate) subject_token_file: PathBuf,
}

impl std::fmt::Debug for IdJagConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdJagConfig")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[REDACTED]"))
            .field("subject_token_file", &self.subject_token_file)
            .finish()
    }
}

impl PartialEq for IdJagConfig {
    fn eq(&self, other: &Self) -> bool {
        (&self.token_url, &self.client_id, &self.subject_token_file)
            == (&other.token_url, &other.client_id, &other.subject_token_file)
    }
}
impl Eq for IdJagConfig {}

impl Grant {
    /// The `grant_type` on the wire, as `grant_types_supported` lists it (RFC 8414 §2).
    pub(crate) fn wire_name(&self) -> &'static str {
        match self {
            Grant::AuthorizationCode => "authorization_code",
            Grant::DeviceCode => DEVICE_CODE_GRANT,
            Grant::Unattended(Unattended::ClientCredentials) => "client_credentials",
            // The ID-JAG is presented in a JWT bearer grant.
            Grant::Unattended(Unattended::JwtBearer { .. } | Unattended::IdJag(_)) => JWT_BEARER_GRANT,
        }
    }

    /// The grant without a browser, if it is one.
    pub(crate) fn unattended(&self) -> Option<&Unattended> {
        match self {
            Grant::AuthorizationCode | Grant::DeviceCode => None,
            Grant::Unattended(grant) => Some(grant),
        }
    }
}

/// `--remote-auth-dpop`: whether tokens are bound to a DPoP key (RFC 9449).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DpopMode {
    /// When the authorization server lists an algorithm the proxy signs with.
    Auto,
    /// Always; a server that does not list one is an error at login.
    Always,
    Never,
}

/// The validated grant settings.
pub(super) struct GrantConfig {
    pub(super) grant: Grant,
    pub(super) assertion_key: Option<Arc<AssertionKey>>,
    pub(super) dpop: DpopMode,
}

/// Whether the grant flags ask for a grant without anyone present (decided before the
/// endpoints are validated: such a grant needs no authorization endpoint, no browser).
pub(super) fn unattended(args: &GrantArgs) -> bool {
    !matches!(args.remote_auth_grant_type.as_str(), "authorization_code" | "device_code")
}

/// Whether the grant flags ask for the device flow (RFC 8628): a person, but no redirect
/// to the proxy, and endpoints only the server's metadata gives.
pub(super) fn device(args: &GrantArgs) -> bool {
    args.remote_auth_grant_type == "device_code"
}

/// Validates the grant flags against the client the other flags configure.
pub(super) fn grant_config(
    args: &GrantArgs,
    client_id: Option<&str>,
    client_secret: Option<&SecretString>,
    env: &dyn Environment,
) -> Result<GrantConfig, ConfigError> {
    const KEY_FLAG: &str = "--remote-auth-client-assertion-key-file";
    const ASSERTION_FLAG: &str = "--remote-auth-assertion-file";
    let alg = args
        .remote_auth_client_assertion_alg
        .as_deref()
        .map(|name| {
            SigningAlg::from_name(name).ok_or_else(|| {
                ConfigError::new("--remote-auth-client-assertion-alg", format!("{name:?} is not a supported algorithm"))
            })
        })
        .transpose()?;
    let assertion_key = match non_empty(&args.remote_auth_client_assertion_key_file) {
        Some(path) => {
            if client_id.is_none() {
                return Err(ConfigError::new(
                    "--remote-auth-client-id",
                    format!("is required with {KEY_FLAG}: the assertions name the client as iss and sub"),
                ));
            }
            if client_secret.is_some() {
                return Err(ConfigError::new(
                    KEY_FLAG,
                    "cannot be combined with a client secret (--remote-auth-client-secret, its -file or \
                     TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET); a client authenticates one way",
                ));
            }
            let pem =
                std::fs::read(path).map_err(|e| ConfigError::new(KEY_FLAG, format!("cannot read {path:?}: {e}")))?;
            let key =
                AssertionKey::from_pem(&pem, alg).map_err(|e| ConfigError::new(KEY_FLAG, format!("{path:?} {e}")))?;
            Some(Arc::new(key))
        }
        None if alg.is_some() => {
            return Err(ConfigError::new(
                "--remote-auth-client-assertion-alg",
                format!("has no effect without {KEY_FLAG}"),
            ));
        }
        None => None,
    };
    let assertion_file = non_empty(&args.remote_auth_assertion_file);
    let grant = match args.remote_auth_grant_type.as_str() {
        "authorization_code" => Grant::AuthorizationCode,
        "client_credentials" => {
            if client_id.is_none() {
                return Err(ConfigError::new(
                    "--remote-auth-client-id",
                    "is required with --remote-auth-grant-type client_credentials",
                ));
            }
            if client_secret.is_none() && assertion_key.is_none() {
                return Err(ConfigError::new(
                    "--remote-auth-client-secret",
                    format!(
                        "--remote-auth-grant-type client_credentials needs the client's credentials: a secret \
                         (--remote-auth-client-secret, --remote-auth-client-secret-file or \
                         TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET) or a key ({KEY_FLAG})"
                    ),
                ));
            }
            Grant::Unattended(Unattended::ClientCredentials)
        }
        "jwt-bearer" => {
            let Some(path) = assertion_file else {
                return Err(ConfigError::new(
                    ASSERTION_FLAG,
                    "is required with --remote-auth-grant-type jwt-bearer: it holds the JWT presented as the grant",
                ));
            };
            // Read once now so a wrong path stops the proxy at startup; it is read again
            // for every token request (the token in it rotates).
            read_assertion(std::path::Path::new(path)).map_err(|e| ConfigError::new(ASSERTION_FLAG, e.to_string()))?;
            Grant::Unattended(Unattended::JwtBearer { assertion_file: PathBuf::from(path) })
        }
        "id-jag" => Grant::Unattended(Unattended::IdJag(Box::new(id_jag_config(args, client_id, env)?))),
        "device_code" => {
            if client_id.is_none() {
                return Err(ConfigError::new(
                    "--remote-auth-client-id",
                    "is required with --remote-auth-grant-type device_code: register a client allowed the \
                     device grant at the authorization server (dynamic registration is for the browser login)",
                ));
            }
            Grant::DeviceCode
        }
        other => {
            return Err(ConfigError::new("--remote-auth-grant-type", format!("{other:?} is not a supported grant")));
        }
    };
    if assertion_file.is_some() && !matches!(grant, Grant::Unattended(Unattended::JwtBearer { .. })) {
        return Err(ConfigError::new(ASSERTION_FLAG, "has no effect without --remote-auth-grant-type jwt-bearer"));
    }
    if !matches!(grant, Grant::Unattended(Unattended::IdJag(_))) {
        let idp_flags = [
            ("--remote-auth-idp-token-url", &args.remote_auth_idp_token_url),
            ("--remote-auth-idp-client-id", &args.remote_auth_idp_client_id),
            ("--remote-auth-idp-client-secret", &args.remote_auth_idp_client_secret),
            ("--remote-auth-idp-client-secret-file", &args.remote_auth_idp_client_secret_file),
            ("--remote-auth-subject-token-file", &args.remote_auth_subject_token_file),
        ];
        if let Some((flag, _)) = idp_flags.iter().find(|(_, v)| non_empty(v).is_some()) {
            return Err(ConfigError::new(*flag, "has no effect without --remote-auth-grant-type id-jag"));
        }
    }
    let dpop = match args.remote_auth_dpop.as_str() {
        "always" => DpopMode::Always,
        "never" => DpopMode::Never,
        _ => DpopMode::Auto,
    };
    Ok(GrantConfig { grant, assertion_key, dpop })
}

/// The id-jag grant's settings: the IdP's token endpoint and the proxy's client there, the
/// file with the user's ID token, and a client at the MCP server's authorization server
/// (the ID-JAG names it; the server authenticates it).
fn id_jag_config(args: &GrantArgs, client_id: Option<&str>, env: &dyn Environment) -> Result<IdJagConfig, ConfigError> {
    const URL_FLAG: &str = "--remote-auth-idp-token-url";
    const SUBJECT_FLAG: &str = "--remote-auth-subject-token-file";
    let required = |flag: &str, value: &Option<String>| {
        non_empty(value)
            .map(str::to_owned)
            .ok_or_else(|| ConfigError::new(flag, "is required with --remote-auth-grant-type id-jag".to_owned()))
    };
    if client_id.is_none() {
        return Err(ConfigError::new(
            "--remote-auth-client-id",
            "is required with --remote-auth-grant-type id-jag: the ID-JAG is issued to this client",
        ));
    }
    let raw = required(URL_FLAG, &args.remote_auth_idp_token_url)?;
    let token_url =
        Url::parse(&raw).map_err(|e| ConfigError::new(URL_FLAG, format!("{raw:?} is not a valid URL ({e})")))?;
    crate::oauth::http::UrlPolicy::default().check(&token_url).map_err(|why| {
        url_refused(URL_FLAG, &why, None, "--remote-auth-idp-client-id and --remote-auth-idp-client-secret-file")
    })?;
    let client_id = required("--remote-auth-idp-client-id", &args.remote_auth_idp_client_id)?;
    let client_secret = resolve_secret(
        &args.remote_auth_idp_client_secret,
        ("--remote-auth-idp-client-secret-file", &args.remote_auth_idp_client_secret_file),
        env.var("TOOLHIVE_REMOTE_AUTH_IDP_CLIENT_SECRET"),
    )?;
    let subject_token_file = PathBuf::from(required(SUBJECT_FLAG, &args.remote_auth_subject_token_file)?);
    read_assertion(&subject_token_file).map_err(|e| ConfigError::new(SUBJECT_FLAG, e.to_string()))?;
    Ok(IdJagConfig { token_url, client_id, client_secret, subject_token_file })
}

/// Why the assertion file gave no assertion.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AssertionFileError {
    #[error("cannot read {path:?}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0:?} is empty")]
    Empty(PathBuf),
}

/// The JWT in `path`, trimmed (a projected token file is rewritten in place by the
/// kubelet: reading it whole each time sees either the old or the new token).
pub(crate) fn read_assertion(path: &std::path::Path) -> Result<SecretString, AssertionFileError> {
    let content =
        std::fs::read_to_string(path).map_err(|source| AssertionFileError::Read { path: path.to_owned(), source })?;
    let jwt = content.trim();
    if jwt.is_empty() {
        return Err(AssertionFileError::Empty(path.to_owned()));
    }
    Ok(SecretString::from(jwt.to_owned()))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;
    use crate::config::OutboundConfig;
    use crate::config::tests::config;

    fn dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "thv-grant-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn p256_pem() -> String {
        use base64::Engine as _;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let der = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
        format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
    }

    const BASE: [&str; 3] = ["--target-uri", "https://mcp.example.com/mcp", "--remote-auth"];

    fn oauth(args: &[&str], env: &[(&'static str, &'static str)]) -> Result<crate::config::OAuthConfig, ConfigError> {
        match config(&[&BASE[..], args].concat(), env)?.outbound {
            Some(OutboundConfig::OAuth(c)) => Ok(*c),
            other => panic!("{other:?}"),
        }
    }

    fn error(args: &[&str], env: &[(&'static str, &'static str)]) -> ConfigError {
        match oauth(args, env) {
            Err(e) => e,
            Ok(_) => panic!("{args:?} should be refused"),
        }
    }

    #[test]
    fn dpop_mode_defaults_to_auto_and_needs_oauth() {
        assert_eq!(oauth(&[], &[]).unwrap().dpop, DpopMode::Auto);
        assert_eq!(oauth(&["--remote-auth-dpop", "always"], &[]).unwrap().dpop, DpopMode::Always);
        assert_eq!(oauth(&["--remote-auth-dpop", "never"], &[]).unwrap().dpop, DpopMode::Never);
        let alone = config(&["--target-uri", "https://mcp.example.com/mcp", "--remote-auth-dpop", "always"], &[]);
        assert_eq!(alone.err().map(|e| e.flag), Some("--remote-auth-dpop".to_owned()), "no effect without OAuth");
        assert!(
            crate::cli::Invocation::parse_from(
                ["thv", "proxy", "s"].iter().chain(&BASE).chain(&["--remote-auth-dpop", "sometimes"])
            )
            .is_err(),
            "an unknown mode is clap's error"
        );
    }

    #[test]
    fn client_credentials_needs_a_client_and_its_credentials() {
        let cc = ["--remote-auth-grant-type", "client_credentials"];
        let e = error(&cc, &[]);
        assert_eq!(e.flag, "--remote-auth-client-id");
        let e = error(&[&cc[..], &["--remote-auth-client-id", "c"]].concat(), &[]);
        assert_eq!(e.flag, "--remote-auth-client-secret");
        assert!(e.problem.contains("--remote-auth-client-assertion-key-file"), "{e}");
        let c = oauth(
            &[&cc[..], &["--remote-auth-client-id", "c"]].concat(),
            &[("TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET", "s")],
        )
        .unwrap();
        assert_eq!(c.grant, Grant::Unattended(Unattended::ClientCredentials));
        assert!(c.assertion_key.is_none());
        // The default is the browser flow, with no key.
        let c = oauth(&[], &[]).unwrap();
        assert_eq!(c.grant, Grant::AuthorizationCode);
        // An unknown grant is clap's error, before config.
        assert!(
            crate::cli::Invocation::parse_from(
                ["thv", "proxy", "s"].iter().chain(&BASE).chain(&["--remote-auth-grant-type", "password"])
            )
            .is_err()
        );
    }

    /// The device flow needs a registered client and the server's metadata (its device
    /// authorization endpoint), takes --remote-auth-skip-browser (the page is opened unless
    /// it is given) but nothing of the redirect, and is a user's login: its tokens are
    /// stored and an issuer's default scopes apply.
    #[test]
    fn device_code_needs_a_client_and_metadata() {
        let dc = ["--remote-auth-grant-type", "device_code"];
        assert_eq!(error(&dc, &[]).flag, "--remote-auth-client-id");
        let with_client = [&dc[..], &["--remote-auth-client-id", "c"]].concat();
        let c = oauth(&with_client, &[("HOME", "/home/u")]).unwrap();
        assert_eq!((c.grant.clone(), c.grant.wire_name()), (Grant::DeviceCode, DEVICE_CODE_GRANT));
        assert!(c.grant.unattended().is_none() && c.store_dir.is_some(), "a user's login, stored");
        assert!(matches!(c.endpoints, crate::config::OAuthEndpoints::Discover));
        let c = oauth(
            &[&with_client[..], &["--remote-auth-issuer", "https://as.example", "--remote-auth-skip-browser"]].concat(),
            &[],
        )
        .unwrap();
        assert_eq!(c.scopes, ["openid", "profile", "email"], "an issuer's defaults for a user");
        assert!(c.skip_browser);
        // Without `--remote-auth` too, like the other grants.
        let bare = config(&[&["--target-uri", "https://mcp.example.com/mcp"][..], &with_client[..]].concat(), &[]);
        assert!(matches!(bare.unwrap().outbound, Some(OutboundConfig::OAuth(_))));
        for (flag, value) in [
            ("--remote-auth-token-url", "https://as.example/token"),
            ("--remote-auth-authorize-url", "https://as.example/authorize"),
            ("--remote-auth-callback-port", "9999"),
            ("--remote-auth-client-metadata-url", "https://client.example/meta"),
        ] {
            let e = error(&[&with_client[..], &[flag, value]].concat(), &[]);
            assert_eq!(e.flag, flag, "{e}");
            assert!(e.problem.contains("device_code"), "{e}");
        }
    }

    #[test]
    fn assertion_keys() {
        let dir = dir();
        let key = dir.join("key.pem");
        std::fs::write(&key, p256_pem()).unwrap();
        let key = key.to_str().unwrap();
        let bad = dir.join("bad.pem");
        std::fs::write(&bad, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        let with_key = ["--remote-auth-client-id", "c", "--remote-auth-client-assertion-key-file", key];
        let c = oauth(&[&with_key[..], &["--remote-auth-grant-type", "client_credentials"]].concat(), &[]).unwrap();
        assert_eq!(c.assertion_key.unwrap().alg(), SigningAlg::ES256);
        // Also for the browser flow's token requests.
        assert!(oauth(&with_key, &[]).unwrap().assertion_key.is_some());
        let e = error(&[&with_key[..], &["--remote-auth-client-assertion-alg", "RS256"]].concat(), &[]);
        assert_eq!(e.flag, "--remote-auth-client-assertion-key-file");
        assert!(e.problem.contains("EC P-256") && e.problem.contains("RS256"), "{e}");
        let e = error(&with_key, &[("TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET", "s")]);
        assert_eq!(e.flag, "--remote-auth-client-assertion-key-file");
        assert!(e.problem.contains("client secret"), "{e}");
        let e = error(&["--remote-auth-client-assertion-key-file", key], &[]);
        assert_eq!(e.flag, "--remote-auth-client-id");
        let e = error(
            &["--remote-auth-client-id", "c", "--remote-auth-client-assertion-key-file", bad.to_str().unwrap()],
            &[],
        );
        assert_eq!(e.flag, "--remote-auth-client-assertion-key-file");
        assert!(e.problem.contains("no PEM private key") && !e.problem.contains("AAAA"), "{e}");
        let e =
            error(&["--remote-auth-client-id", "c", "--remote-auth-client-assertion-key-file", "/nonexistent/k"], &[]);
        assert!(e.problem.contains("/nonexistent/k"), "{e}");
        let e = error(&["--remote-auth-client-assertion-alg", "ES256"], &[]);
        assert_eq!(e.flag, "--remote-auth-client-assertion-alg");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn jwt_bearer_reads_its_assertion_file_every_time() {
        let dir = dir();
        let file = dir.join("token");
        std::fs::write(&file, "first.jwt.value\n").unwrap();
        let path = file.to_str().unwrap();
        let jb = ["--remote-auth-grant-type", "jwt-bearer"];
        let e = error(&jb, &[]);
        assert_eq!(e.flag, "--remote-auth-assertion-file");
        let c = oauth(&[&jb[..], &["--remote-auth-assertion-file", path]].concat(), &[]).unwrap();
        let Grant::Unattended(Unattended::JwtBearer { assertion_file }) = &c.grant else { panic!("{:?}", c.grant) };
        assert_eq!(read_assertion(assertion_file).unwrap().expose_secret(), "first.jwt.value");
        std::fs::write(&file, "second.jwt.value").unwrap();
        assert_eq!(read_assertion(assertion_file).unwrap().expose_secret(), "second.jwt.value", "re-read");
        std::fs::write(&file, "  \n").unwrap();
        assert!(read_assertion(assertion_file).unwrap_err().to_string().contains("empty"));
        let e = error(&[&jb[..], &["--remote-auth-assertion-file", "/nonexistent/t"]].concat(), &[]);
        assert!(e.flag == "--remote-auth-assertion-file" && e.problem.contains("/nonexistent/t"), "{e}");
        let e = error(&["--remote-auth-assertion-file", path], &[]);
        assert_eq!(e.flag, "--remote-auth-assertion-file");
        // No authorization endpoint is needed without a browser; a token URL is enough.
        std::fs::write(&file, "third").unwrap();
        let c = oauth(
            &[&jb[..], &["--remote-auth-assertion-file", path, "--remote-auth-token-url", "https://as.example/token"]]
                .concat(),
            &[],
        )
        .unwrap();
        assert!(matches!(c.endpoints, crate::config::OAuthEndpoints::Manual { authorize: None, .. }));
        let e = error(&["--remote-auth-token-url", "https://as.example/token", "--remote-auth-client-id", "c"], &[]);
        assert_eq!(e.flag, "--remote-auth-authorize-url", "the browser flow still needs it");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn id_jag_needs_the_idp_and_an_id_token() {
        let dir = dir();
        let token = dir.join("id-token");
        std::fs::write(&token, "eyJ.id-token.sig").unwrap();
        let token = token.to_str().unwrap();
        let idp = [
            "--remote-auth-grant-type",
            "id-jag",
            "--remote-auth-client-id",
            "mcp-client",
            "--remote-auth-idp-token-url",
            "https://idp.example/token",
            "--remote-auth-idp-client-id",
            "idp-client",
            "--remote-auth-subject-token-file",
            token,
        ];
        let env = [("TOOLHIVE_REMOTE_AUTH_IDP_CLIENT_SECRET", "idp-env-secret")];
        let c = oauth(&idp, &env).unwrap();
        let Grant::Unattended(Unattended::IdJag(j)) = &c.grant else { panic!("{:?}", c.grant) };
        assert_eq!((j.token_url.as_str(), j.client_id.as_str()), ("https://idp.example/token", "idp-client"));
        assert_eq!(j.client_secret.as_ref().map(|s| s.expose_secret()), Some("idp-env-secret"));
        assert!(!format!("{:?}", c.grant).contains("idp-env-secret"), "Debug redacts the secret");
        assert_eq!(c.grant.wire_name(), JWT_BEARER_GRANT, "presented as a JWT bearer grant");
        let c = oauth(&[&idp[..], &["--remote-auth-idp-client-secret", "from-flag"]].concat(), &env).unwrap();
        let Grant::Unattended(Unattended::IdJag(j)) = &c.grant else { panic!() };
        assert_eq!(j.client_secret.as_ref().map(|s| s.expose_secret()), Some("from-flag"), "flag > env");
        // Each required flag missing is named.
        for (i, flag) in [
            (2, "--remote-auth-client-id"),
            (4, "--remote-auth-idp-token-url"),
            (6, "--remote-auth-idp-client-id"),
            (8, "--remote-auth-subject-token-file"),
        ] {
            let mut args = idp.to_vec();
            args.drain(i..i + 2);
            assert_eq!(error(&args, &[]).flag, flag);
        }
        let mut plain = idp.to_vec();
        plain[5] = "http://idp.example/token";
        assert_eq!(error(&plain, &[]).flag, "--remote-auth-idp-token-url");
        let e = error(&["--remote-auth-idp-client-id", "x"], &[]);
        assert!(e.flag == "--remote-auth-idp-client-id" && e.problem.contains("id-jag"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
