//! Command line and configuration validation (`thv::cli`, `thv::config`).
//!
//! Two targets:
//! - [`values`]: one flag value through `normalize_origin`, `parse_size`,
//!   `parse_go_duration` and `is_local_host`, with their invariants (idempotence,
//!   round trips, bounds, case-insensitivity);
//! - [`cli`]: a whole command line (one argument per line; lines `ENV NAME=value` set
//!   variables of the injected environment) through `Invocation::parse_from` and
//!   `Config::from_invocation`. Whatever it accepts must be self-consistent, and the
//!   target it accepted must be accepted again, unchanged, in its displayed form.
//!
//! The `cli` target never touches the network or arbitrary files: a `--host` that is not an
//! IP literal (it would be resolved by DNS) is replaced by 127.0.0.1, and every file flag
//! is pointed at one of a few fixture files chosen by the value given.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use thv::internals::{
    Command, Config, Environment, Invocation, OutboundConfig, ProxyCommand, is_local_host, normalize_origin,
    parse_go_duration, parse_size,
};

/// Go's `time.Duration.String()` rendering of `d` (e.g. `1h2m3.5s`, `1.5ms`, `0s`).
pub fn go_format(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    let frac = |value: u128, unit: u128, suffix: &str| {
        let whole = value / unit;
        let rest = value % unit;
        if rest == 0 {
            format!("{whole}{suffix}")
        } else {
            let width = unit.ilog10() as usize;
            let digits = format!("{rest:0width$}");
            format!("{whole}.{}{suffix}", digits.trim_end_matches('0'))
        }
    };
    if ns < 1_000 {
        return format!("{ns}ns");
    }
    if ns < 1_000_000 {
        return frac(ns, 1_000, "µs");
    }
    if ns < 1_000_000_000 {
        return frac(ns, 1_000_000, "ms");
    }
    let h = ns / 3_600_000_000_000;
    let m = ns / 60_000_000_000 % 60;
    let s = ns % 60_000_000_000;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&frac(s, 1_000_000_000, "s"));
    out
}

fn check_origin(raw: &str) {
    let Ok(origin) = normalize_origin(raw) else { return };
    assert!(origin.starts_with("http://") || origin.starts_with("https://"), "{origin}");
    assert_eq!(origin, origin.to_ascii_lowercase(), "{origin}");
    // Normalised as browsers serialise an origin (the URL Standard), which is what a
    // browser sends in `Origin`: a host, canonical host and port, no default port.
    let browser = url::Url::parse(&origin).ok().map(|u| u.origin().ascii_serialization());
    if KNOWN_ISSUE_ORIGIN_NOT_CANONICAL && browser.as_deref() != Some(origin.as_str()) {
        return;
    }
    assert_eq!(browser.as_deref(), Some(origin.as_str()), "{raw:?} is not normalised as browsers do");
    assert!(!origin.ends_with('/'), "{origin}");
    assert_eq!(normalize_origin(&origin).as_deref(), Ok(origin.as_str()), "not idempotent for {raw:?}");
    assert_eq!(normalize_origin(&raw.to_ascii_uppercase()).as_deref(), Ok(origin.as_str()), "case of {raw:?}");
}

pub fn values(data: &[u8]) {
    if data.len() > 4096 {
        return;
    }
    let raw = String::from_utf8_lossy(data);
    let raw = raw.as_ref();

    check_origin(raw);

    // Sizes: bounded, plain digits round-trip, units are case-insensitive.
    if let Ok(n) = parse_size(raw) {
        assert!((1..=4usize << 30).contains(&n), "{raw:?} → {n}");
        assert_eq!(parse_size(&n.to_string()), Ok(n));
        assert_eq!(parse_size(&format!(" {n} B ")), Ok(n));
        assert_eq!(parse_size(&raw.to_ascii_uppercase()), Ok(n), "case of {raw:?}");
        if n % 1024 == 0 {
            assert_eq!(parse_size(&format!("{}KiB", n / 1024)), Ok(n));
        }
    }

    // Durations: Go's own rendering parses back to the same value.
    if let Ok(d) = parse_go_duration(raw) {
        let go = go_format(d);
        let back = parse_go_duration(&go).unwrap_or_else(|e| panic!("{raw:?} → {d:?} → {go:?}: {e}"));
        // Exact below 2^53 ns (~104 days), where an f64 holds every nanosecond.
        if d.as_nanos() < 1 << 53 {
            assert_eq!(back, d, "{raw:?} → {go:?}");
        }
        if !raw.trim().starts_with('+') {
            assert_eq!(parse_go_duration(&format!("+{}", raw.trim())), Ok(d), "a leading + for {raw:?}");
        }
        if d.as_nanos() < 1 << 53 {
            assert_eq!(parse_go_duration(&format!("{}ns", d.as_nanos())), Ok(d));
        }
    }

    // Hosts: case-insensitive; an IP literal means the same with or without brackets.
    let local = is_local_host(raw);
    assert_eq!(is_local_host(&raw.to_ascii_uppercase()), local, "case of {raw:?}");
    assert_eq!(is_local_host(&raw.to_ascii_lowercase()), local, "case of {raw:?}");
    if raw.parse::<std::net::IpAddr>().is_ok() {
        assert_eq!(is_local_host(&format!("[{raw}]")), local, "brackets around {raw:?}");
    }
}

struct MapEnv(HashMap<String, String>);

impl Environment for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// A few files for the file flags: a secret, an empty file, a PEM bundle that is not one,
/// and a path that does not exist.
fn fixtures() -> &'static [PathBuf; 4] {
    static F: OnceLock<[PathBuf; 4]> = OnceLock::new();
    F.get_or_init(|| {
        // One fixed directory (same content every time), so runs leave nothing new behind.
        let dir = std::env::temp_dir().join("thv-fuzz-config-fixtures");
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("secret");
        std::fs::write(&secret, "  s3cr3t-from-file\n").unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let pem = dir.join("bundle.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap();
        [secret, empty, pem, dir.join("missing")]
    })
}

fn fixture_for(value: &Option<String>) -> Option<String> {
    let v = value.as_ref()?;
    if v.trim().is_empty() {
        return Some(v.clone()); // blank: the "not given" path
    }
    let i = v.bytes().fold(0usize, |a, b| a.wrapping_mul(31).wrapping_add(usize::from(b))) % 4;
    Some(fixtures()[i].to_string_lossy().into_owned())
}

/// Whether `host` would be taken as an IP literal or refused without a DNS lookup.
fn resolves_offline(host: &str) -> bool {
    let host = host.trim();
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    host.is_empty() || literal.parse::<std::net::IpAddr>().is_ok() || host.contains([':', '/', ' '])
}

pub fn cli(data: &[u8]) {
    if data.len() > 8192 {
        return;
    }
    let text = String::from_utf8_lossy(data);
    let mut argv = vec!["thv".to_owned()];
    let mut env = HashMap::new();
    for line in text.split('\n') {
        match line.strip_prefix("ENV ").and_then(|kv| kv.split_once('=')) {
            Some((k, v)) => {
                env.insert(k.to_owned(), v.to_owned());
            }
            None => argv.push(line.to_owned()),
        }
    }
    let env = MapEnv(env);
    let Ok(mut inv) = Invocation::parse_from(&argv) else { return };
    {
        // `thv proxy stdio` shares the target and outbound rules, which are fuzzed here
        // through the HTTP proxy's command line.
        let Command::Proxy(ProxyCommand::Http(args)) = &mut inv.cli.command else { return };
        if !resolves_offline(&args.listen.host) {
            args.listen.host = "127.0.0.1".to_owned();
        }
        let ra = &mut args.remote_auth;
        ra.remote_auth_client_secret_file = fixture_for(&ra.remote_auth_client_secret_file);
        ra.remote_auth_bearer_token_file = fixture_for(&ra.remote_auth_bearer_token_file);
        args.oidc.oidc_ca_bundle = fixture_for(&args.oidc.oidc_ca_bundle);
    }
    for name in &inv.given {
        assert!(!name.is_empty() && !name.starts_with('-'), "given flag {name:?}");
    }
    let Ok(config) = Config::from_invocation(&inv, &env) else { return };
    check_config(&config, &inv, &env);
}

/// KNOWN ISSUE (reported; set to `false` once fixed, the seeds
/// `seeds/config_cli/regress-target-*` then guard it): `--target-uri` is checked with
/// `http::Uri` only, which takes an authority whose port is not a port
/// (`https://example.com:abc/mcp`, `http://example.com:99999/`: `Target::socket_authority`
/// then connects to the scheme's default port) and hosts the URL Standard refuses
/// (`http://217.0.0.1000/`): the target then is not a `Url` for discovery, and the RFC 8707
/// resource made from it is not one either.
const KNOWN_ISSUE_TARGET_NOT_A_URL: bool = false;

/// KNOWN ISSUE (reported; set to `false` once fixed, the seeds
/// `seeds/config_values/regress-origin-*` then guard it): `normalize_origin` parses with
/// `http::uri::Authority`, which is laxer than the URL Standard browsers use, so it accepts
/// an empty host (`http://:` → `http://`), a malformed one (`http://3[::00ms1]:62` →
/// `http://3[:62`, not idempotent) and keeps forms a browser canonicalises (`http://00` is
/// `http://0.0.0.0`, `http://a:080` is `http://a`, `[::ffff:1.2.3.4]` is
/// `[::ffff:102:304]`). Such an `--allowed-origins` entry never matches (fails closed).
const KNOWN_ISSUE_ORIGIN_NOT_CANONICAL: bool = false;

fn check_config(config: &Config, inv: &Invocation, env: &MapEnv) {
    assert!(!config.server_name.is_empty() && config.server_name.trim() == config.server_name);
    assert!((1..=4usize << 30).contains(&config.max_request_body));
    assert!(config.upstream_timeout.is_none_or(|t| !t.is_zero()));
    for o in &config.extra_origins {
        let browser = url::Url::parse(o).ok().map(|u| u.origin().ascii_serialization());
        if KNOWN_ISSUE_ORIGIN_NOT_CANONICAL && browser.as_deref() != Some(o.as_str()) {
            continue;
        }
        assert_eq!(normalize_origin(o).as_deref(), Ok(o.as_str()), "extra origin {o:?} is not normalised");
    }
    let t = &config.target;
    assert!(t.endpoint_path.starts_with('/'), "endpoint path {:?}", t.endpoint_path);
    assert!(!t.authority.as_str().contains('@'), "credentials in the target {t}");
    assert!(!t.display().contains('#'), "a fragment in the target {t}");
    assert!(t.query.as_deref().is_none_or(|q| !q.is_empty()));
    assert!(t.authority.port_u16() != Some(0));
    assert_eq!(t.is_local, is_local_host(t.authority.host()));
    assert!(t.socket_authority().rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()));
    // What the proxy connects to is what the user wrote: a port that is there but is not a
    // number must not silently become the default port.
    let port_text = t.authority.as_str().rsplit_once(':').filter(|(h, _)| !h.starts_with('[') || h.ends_with(']'));
    let bad_port = port_text.is_some_and(|(_, p)| !p.is_empty() && t.authority.port_u16().is_none());
    // The target is a URL for everything else that reads it (discovery, RFC 8707 resource).
    let as_url = url::Url::parse(&t.display());
    if KNOWN_ISSUE_TARGET_NOT_A_URL && (bad_port || as_url.is_err()) {
        return;
    }
    assert!(!bad_port, "target {t}: the port is not a port");
    assert!(as_url.is_ok(), "target {t} is not a URL");

    // The displayed target is accepted again and means the same.
    let Command::Proxy(ProxyCommand::Http(args)) = &inv.cli.command else { unreachable!("an HTTP proxy config") };
    let argv = ["thv", "proxy", "srv", "--host", "127.0.0.1", "--target-uri", &t.display()];
    let again = Invocation::parse_from(argv).expect("the displayed target parses as a flag");
    let again = Config::from_invocation(&again, &MapEnv(HashMap::new())).unwrap_or_else(|e| {
        panic!("target {:?} displayed as {:?} is refused: {e}", args.listen.target_uri, t.display())
    });
    assert_eq!(again.target.display(), t.display());
    assert_eq!(again.target.is_local, t.is_local);
    assert_eq!(again.target.socket_authority(), t.socket_authority());

    if let Some(inbound) = &config.inbound {
        assert!(inbound.leeway <= Duration::from_secs(600));
        for s in &inbound.required_scopes {
            assert!(!s.is_empty() && !s.contains(char::is_whitespace) && !s.contains(['"', '\\']), "scope {s:?}");
        }
        if let Some(r) = &inbound.resource_url {
            assert!(matches!(r.scheme(), "http" | "https") && r.host_str().is_some() && r.fragment().is_none());
        }
        #[allow(clippy::needless_update)]
        let policy = thv::internals::UrlPolicy { allow_insecure: inbound.allow_insecure, ..Default::default() };
        for u in inbound.jwks_url.iter().chain(inbound.introspection.as_ref().map(|i| &i.url)) {
            assert!(policy.check(u).is_ok(), "{u} was accepted but fails the policy");
        }
        if let Some(i) = &inbound.introspection {
            assert!(i.client_secret.is_none() || i.client_id.is_some());
        }
    }
    if let Some(OutboundConfig::OAuth(o)) = &config.outbound {
        assert!(o.callback_port >= 1024);
        assert!(!o.timeout.is_zero());
        for s in &o.scopes {
            assert!(!s.is_empty() && s.trim() == s, "scope {s:?}");
        }
        assert!(o.resource.parse::<url::Url>().is_ok(), "the RFC 8707 resource {:?} is not a URL", o.resource);
        assert!(!o.resource.contains('#'), "a fragment in the resource {:?}", o.resource);
        if let Some(dir) = &o.store_dir {
            assert!(!dir.as_os_str().is_empty());
        }
        let _ = env;
    }
}
