//! The command line: ToolHive's flags and defaults, and every startup error naming the flag
//! at fault and the fix, with a non-zero exit before anything is served.

use crate::support::{Thv, run_thv, run_thv_env};

/// Every flag of `thv proxy` in the reference (thv_proxy.md), with its default if any.
const REFERENCE_FLAGS: &[(&str, Option<&str>)] = &[
    ("--host", Some("127.0.0.1")),
    ("--oidc-audience", None),
    ("--oidc-client-id", None),
    ("--oidc-client-secret", None),
    ("--oidc-introspection-url", None),
    ("--oidc-issuer", None),
    ("--oidc-jwks-url", None),
    ("--port", Some("0")),
    ("--remote-auth", Some("false")),
    ("--remote-auth-authorize-url", None),
    ("--remote-auth-callback-port", Some("8666")),
    ("--remote-auth-client-id", None),
    ("--remote-auth-client-secret", None),
    ("--remote-auth-client-secret-file", None),
    ("--remote-auth-issuer", None),
    ("--remote-auth-scopes", None),
    ("--remote-auth-skip-browser", Some("false")),
    ("--remote-auth-timeout", Some("30s")),
    ("--remote-auth-token-url", None),
    ("--resource-url", None),
    ("--target-uri", None),
    ("--debug", Some("false")),
];

#[test]
fn help_lists_every_reference_flag_with_its_default() {
    let (code, out, _) = run_thv(&["proxy", "--help"]);
    assert_eq!(code, 0);
    // Each flag's help entry runs from its name to the next flag's name.
    for (flag, default) in REFERENCE_FLAGS {
        let start = out
            .find(&format!("{flag} "))
            .or_else(|| out.find(&format!("{flag}[")))
            .unwrap_or_else(|| panic!("{flag} missing from help:\n{out}"));
        let entry = &out[start..];
        let end = entry[2..].find("\n  -").map_or(entry.len(), |i| i + 2);
        let entry = &entry[..end];
        if let Some(default) = default {
            assert!(entry.contains(&format!("[default: {default}]")), "{flag} should show default {default}:\n{entry}");
        }
    }
    assert!(out.contains("SERVER_NAME"));
}

#[test]
fn version_is_printed() {
    let (code, out, _) = run_thv(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("thv "), "{out}");
}

/// Runs `thv proxy srv ARGS…`, expects a startup failure, and returns stderr.
fn startup_error(args: &[&str]) -> String {
    let mut argv = vec!["proxy", "srv"];
    argv.extend_from_slice(args);
    let (code, out, err) = run_thv(&argv);
    assert_eq!(code, 1, "thv {argv:?} should fail with exit 1; stdout: {out}; stderr: {err}");
    assert!(!out.contains("proxy started"), "must fail before serving: {out}");
    err
}

#[test]
fn bad_input_names_the_flag_and_the_fix() {
    let cases: &[(&[&str], &[&str])] = &[
        (&["--target-uri", "localhost:8080"], &["--target-uri", "http://"]),
        (&["--target-uri", "ftp://example.com"], &["--target-uri", "only http:// and https://"]),
        (&["--target-uri", "http://user:pw@example.com"], &["--target-uri", "credentials"]),
        (&["--target-uri", "http://x", "--port", "65536"], &["--port"]),
        (&["--target-uri", "http://x", "--port", "-1"], &["--port"]),
        (&["--target-uri", "http://x", "--host", "http://0.0.0.0"], &["--host"]),
        (&["--target-uri", "http://x", "--allowed-origins", "evil.example"], &["--allowed-origins", "https://"]),
        (&["--target-uri", "http://x", "--max-request-body", "lots"], &["--max-request-body"]),
        (&["--target-uri", "http://x", "--upstream-timeout", "5 minutes"], &["--upstream-timeout", "30s"]),
        (&["--target-uri", "http://x", "--remote-auth-timeout", "-5s"], &["--remote-auth-timeout"]),
        (&["--target-uri", "http://x", "--remote-auth-callback-port", "80"], &["--remote-auth-callback-port"]),
        (&[], &["--target-uri"]),
    ];
    for (args, needles) in cases {
        let err = startup_error(args);
        for needle in *needles {
            assert!(err.contains(needle), "thv {args:?}: expected {needle:?} in: {err}");
        }
    }
}

#[test]
fn missing_or_extra_server_name_is_refused() {
    let (code, _, err) = run_thv(&["proxy", "--target-uri", "http://x"]);
    assert_eq!(code, 1);
    assert!(err.contains("SERVER_NAME"), "{err}");
    let (code, _, _) = run_thv(&["proxy", "a", "b", "--target-uri", "http://x"]);
    assert_eq!(code, 1);
}

/// Flags that would do nothing without the feature they configure stop the proxy instead
/// of being silently ignored.
#[test]
fn flags_that_would_do_nothing_are_refused_not_ignored() {
    for (args, needle) in [
        (&["--resource-url", "https://mcp.example/mcp"][..], "--oidc-issuer"),
        (&["--oidc-scopes", "mcp:tools"], "--oidc-issuer"),
        (&["--remote-auth-scopes", "a,b"], "--remote-auth"),
        (&["--remote-auth-callback-port", "9000"], "--remote-auth"),
    ] {
        let mut full = vec!["--target-uri", "http://127.0.0.1:1/mcp"];
        full.extend_from_slice(args);
        let err = startup_error(&full);
        assert!(err.contains(args[0]) && err.contains(needle), "{err} should name {} and {needle}", args[0]);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
}

#[test]
fn secrets_are_never_echoed_in_errors() {
    let err = startup_error(&[
        "--target-uri",
        "http://127.0.0.1:1/mcp",
        "--remote-auth-bearer-token",
        "tok-secret-123",
        "--port",
        "70000",
    ]);
    assert!(!err.contains("tok-secret-123"), "{err}");
}

/// `--remote-forward-headers*` and the authorization request's extras: each refusal names
/// its flag in one line, for `thv proxy` and `thv proxy stdio` alike, and never the value.
#[test]
fn forwarded_headers_and_authorize_params_are_checked_at_startup() {
    for (args, needles) in [
        (&["--remote-forward-headers", "Host=fwd-s3cret"][..], &["--remote-forward-headers", "\"Host\""][..]),
        (&["--remote-forward-headers", "X-A=fwd-s3cret\nX-B: 1"], &["--remote-forward-headers", "control character"]),
        (
            &["--remote-forward-headers-secret", "X-Key=vault/fwd-s3cret"],
            &["--remote-forward-headers-secret", "no secrets manager"],
        ),
        (
            &["--remote-forward-headers-secret", "X-Key=env:THV_IT_NOT_SET"],
            &["--remote-forward-headers-secret", "THV_IT_NOT_SET"],
        ),
        (
            &["--remote-forward-headers", "Authorization=fwd-s3cret", "--remote-auth-bearer-token", "t"],
            &["--remote-forward-headers", "authenticates"],
        ),
        (
            &["--remote-auth", "--remote-auth-authorize-param", "state=fwd-s3cret"],
            &["--remote-auth-authorize-param", "\"state\""],
        ),
        (
            &["--remote-auth", "--remote-auth-scope-param-name", "redirect_uri"],
            &["--remote-auth-scope-param-name", "redirect_uri"],
        ),
        (&["--remote-auth-scope-param-name", "user_scope"], &["--remote-auth-scope-param-name", "--remote-auth"]),
    ] {
        for stdio in [false, true] {
            let mut argv = if stdio { vec!["proxy", "stdio", "srv"] } else { vec!["proxy", "srv"] };
            argv.extend(["--target-uri", "http://127.0.0.1:1/mcp"]);
            argv.extend_from_slice(args);
            let (code, out, err) = run_thv(&argv);
            assert_eq!(code, 1, "thv {argv:?} should fail; stdout: {out}; stderr: {err}");
            for needle in needles {
                assert!(err.contains(needle), "thv {argv:?}: expected {needle:?} in: {err}");
            }
            assert!(!err.contains("fwd-s3cret"), "thv {argv:?} echoed a value: {err}");
            assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        }
    }
}

#[test]
fn conflicting_flags_are_refused() {
    let err = startup_error(&[
        "--target-uri",
        "http://x",
        "--remote-auth-issuer",
        "https://a",
        "--remote-auth-authorize-url",
        "https://a/authorize",
    ]);
    assert!(err.contains("--remote-auth-issuer") && err.contains("--remote-auth-authorize-url"), "{err}");
}

#[test]
fn a_busy_port_is_an_error_not_a_silent_move() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let err = startup_error(&["--target-uri", "http://127.0.0.1:1/mcp", "--port", &port]);
    assert!(err.contains("--port") && err.contains("already in use"), "{err}");
}

#[test]
fn startup_line_names_server_client_url_and_target() {
    let thv = Thv::start_args(&["proxy", "my-server", "--target-uri", "http://127.0.0.1:9/mcp", "--port", "0"]);
    let line = &thv.startup_line;
    assert!(line.contains("for server my-server"), "{line}");
    assert!(line.contains(&format!("http://127.0.0.1:{}/mcp", thv.port)), "{line}");
    assert!(line.contains("-> http://127.0.0.1:9/mcp"), "{line}");
}

/// A warning about the flags reaches the log: it used to be emitted before the logger
/// existed, and went nowhere.
#[test]
fn a_flag_warning_is_logged() {
    let thv = Thv::start_env(
        "http://127.0.0.1:9/mcp",
        &["--remote-auth", "--remote-auth-skip-browser"],
        &[("TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN", "static-token")],
    );
    let log = thv.wait_for_stderr("a static bearer token is configured");
    assert!(!log.contains("static-token"), "the token is never logged: {log}");
}

/// A setup failure of outgoing auth names the flag and what is wrong (it is its own error
/// now, no longer a bind error with the same text), and never echoes the token.
#[test]
fn an_outgoing_auth_setup_failure_is_not_called_a_bind_error() {
    let (code, _, err) = run_thv_env(
        &["proxy", "srv", "--target-uri", "http://127.0.0.1:9/mcp"],
        &[("TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN", "bad\u{7f}token")],
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("--remote-auth") && err.contains("not allowed in a header"), "{err}");
    assert!(!err.contains("listen") && !err.contains("bad\u{7f}token"), "{err}");
}
