//! The operator's header fields (`--remote-forward-headers`, `--remote-forward-headers-secret`)
//! through both engines (see `diff.rs`): every request the target gets carries them, a
//! client's field of the same name is replaced (the configured value wins), a token the
//! proxy consumes is still read, and no value reaches the `--debug` log. The own engine
//! must serve these requests itself, not leave them to hyper's.

use super::auth::tokens;
use super::cases::{FLAGS, post};
use super::diff::{Case, Engine, case, run};
use super::diff::{Sent, Status, TargetHas, TargetNoValue};
use super::wire::{OK, Target};
use crate::support::Thv;
use crate::support::idp::{idp, key};

/// The secrets, from an environment variable and from a file.
const ENV_SECRET: &str = "fwd-env-s3cret-5d1e";
const FILE_SECRET: &str = "fwd-file-s3cret-a7c0";
const ENV_VAR: &str = "THV_IT_FORWARD_KEY";

/// The configured fields on every request the target gets.
const CONFIGURED: [super::diff::Check; 3] =
    [TargetHas("x-tenant", "acme"), TargetHas("x-api-key", ENV_SECRET), TargetHas("x-file-key", FILE_SECRET)];

#[rustfmt::skip]
fn forward_cases() -> Vec<Case> {
    vec![
        case("forward: POST", post!(""), OK, &[Status(200), Sent(1), CONFIGURED[0], CONFIGURED[1], CONFIGURED[2]]),
        case("forward: the client's fields of the same names are replaced",
            post!("X-Api-Key: forged-1\r\nx-tenant: forged-2\r\nX-TENANT: forged-3\r\nX-File-Key: forged-4\r\nX-Kept: yes\r\n"),
            OK, &[Status(200), Sent(1), CONFIGURED[0], CONFIGURED[1], CONFIGURED[2], TargetNoValue("forged"),
            TargetHas("x-kept", "yes")]),
        case("forward: GET stream", "GET /mcp HTTP/1.1\r\n{H}Accept: text/event-stream\r\nX-Tenant: forged\r\n\r\n", OK,
            &[Status(200), Sent(1), CONFIGURED[0], CONFIGURED[1], CONFIGURED[2], TargetNoValue("forged")]),
        case("forward: DELETE", "DELETE /mcp HTTP/1.1\r\n{H}Mcp-Session-Id: s-1\r\n\r\n", OK,
            &[Status(200), Sent(1), CONFIGURED[0], CONFIGURED[1], CONFIGURED[2], TargetHas("mcp-session-id", "s-1")]),
    ]
}

/// The pair, with the configured fields; `extra` flags after them.
fn start(target: &Target, file: &std::path::Path, extra: &[&str]) -> (Thv, Thv) {
    let file_ref = format!("X-File-Key=file:{}", file.display());
    let env_ref = format!("X-Api-Key=env:{ENV_VAR}");
    let mut flags = FLAGS.to_vec();
    flags.extend([
        "--remote-forward-headers",
        "X-Tenant=acme",
        "--remote-forward-headers-secret",
        &env_ref,
        "--remote-forward-headers-secret",
        &file_ref,
    ]);
    flags.extend_from_slice(extra);
    let url = format!("http://{}/mcp", target.addr);
    (
        Thv::start_env(&url, &flags, &[(ENV_VAR, ENV_SECRET)]),
        Thv::start_env(&url, &flags, &[(ENV_VAR, ENV_SECRET), ("THV_HTTP1", "hyper")]),
    )
}

fn secret_file(name: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("thv-it-forward-{name}-{}", std::process::id()));
    std::fs::write(&path, format!("{FILE_SECRET}\n")).unwrap();
    path
}

/// What every run must show of the pair's logs: no secret, and no request left to hyper's
/// engine by the own one (which would make the comparison hyper against hyper).
fn logs_are_clean(own: &Thv, hyper: &Thv) {
    for (name, thv) in [("own", own), ("hyper", hyper)] {
        let log = thv.stderr();
        assert!(log.contains("method=POST"), "[{name}] the --debug request lines are there:\n{log}");
        for secret in [ENV_SECRET, FILE_SECRET, "Bearer upstream-key"] {
            assert!(!log.contains(secret), "[{name}] {secret} leaked into the log:\n{log}");
        }
    }
    assert!(!own.stderr().contains("left to hyper"), "the own engine served every case:\n{}", own.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_fields_reach_the_target_alike_on_both_engines() {
    let target = Target::start().await;
    let file = secret_file("plain");
    let (own, hyper) = start(&target, &file, &[]);
    let engines = [Engine::new("own", &own), Engine::new("hyper", &hyper)];
    let cases = forward_cases();
    let failures = run("forward", &target, &engines, &cases).await;
    std::fs::remove_file(&file).unwrap();
    assert!(failures.is_empty(), "{} differential cases; failures:\n{}", cases.len(), failures.join("\n"));
    logs_are_clean(&own, &hyper);
}

/// With incoming auth the client's token is consumed and a configured `Authorization`
/// (the operator's own credential for the target) goes in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_authorization_replaces_a_consumed_token_alike_on_both_engines() {
    let ((signing, jwk), (other, _)) = (key(), key());
    let idp = idp(jwk).await;
    let issuer = format!("http://{}", idp.addr);
    let target = Target::start().await;
    let file = secret_file("auth");
    let extra = ["--oidc-issuer", &issuer, "--remote-forward-headers", "Authorization=Bearer upstream-key"];
    let (own, hyper) = start(&target, &file, &extra);
    let mut engines = [Engine::new("own", &own), Engine::new("hyper", &hyper)];
    for engine in &mut engines {
        tokens(engine, &issuer, &signing, &other);
    }
    #[rustfmt::skip]
    let cases = [
        case("forward+auth: valid token", post!("Authorization: Bearer {VALID}\r\n"), OK,
            &[Status(200), Sent(1), TargetHas("authorization", "Bearer upstream-key"), TargetNoValue("eyJ"),
            CONFIGURED[1]]),
        case("forward+auth: no token", post!(""), OK, &[Status(401), Sent(0)]),
        case("forward+auth: expired", post!("Authorization: Bearer {EXPIRED}\r\n"), OK, &[Status(401), Sent(0)]),
    ];
    let failures = run("forward+auth", &target, &engines, &cases).await;
    std::fs::remove_file(&file).unwrap();
    assert!(failures.is_empty(), "{} differential cases; failures:\n{}", cases.len(), failures.join("\n"));
    logs_are_clean(&own, &hyper);
}
