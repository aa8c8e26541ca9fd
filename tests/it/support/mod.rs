//! Shared helpers for the integration tests: start `thv` as a child process on a free
//! loopback port, and stop it again by its own PID.

#![allow(dead_code)]

pub mod auth_server;
pub mod idp;
pub mod legacy_sse;
pub mod mcp_server;
pub mod upstream;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the `thv` binary that cargo built for this test run.
pub const THV: &str = env!("CARGO_BIN_EXE_thv");

/// How long a test waits for the proxy's startup line before giving up.
const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// A running `thv proxy` child process. Dropping it kills the process.
pub struct Thv {
    child: Option<Child>,
    /// The port the proxy listens on (read from its startup line).
    pub port: u16,
    /// The whole startup line printed on stdout.
    pub startup_line: String,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Thv {
    /// Starts `thv proxy test-server --target-uri TARGET --port 0 EXTRA…` and waits for it
    /// to report that it listens.
    pub fn start(target: &str, extra: &[&str]) -> Thv {
        let mut args = vec!["proxy", "test-server", "--target-uri", target, "--port", "0"];
        args.extend_from_slice(extra);
        Thv::start_args(&args)
    }

    /// As [`Thv::start`], with these environment variables set for the proxy.
    pub fn start_env(target: &str, extra: &[&str], env: &[(&str, &str)]) -> Thv {
        let mut args = vec!["proxy", "test-server", "--target-uri", target, "--port", "0"];
        args.extend_from_slice(extra);
        Thv::spawn(&args, env)
    }

    /// Starts `thv` with exactly these arguments and waits for the startup line.
    pub fn start_args(args: &[&str]) -> Thv {
        Thv::spawn(args, &[])
    }

    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Thv {
        let mut child = Command::new(THV)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("TOOLHIVE_DEBUG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn thv");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let captured = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = captured.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut s = sink.lock().expect("stderr lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(STARTUP_DEADLINE) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                std::thread::sleep(Duration::from_millis(100));
                panic!("thv did not start (exit {status:?}); stderr:\n{}", captured.lock().expect("stderr lock"));
            }
        };
        let port = parse_port(&line).unwrap_or_else(|| panic!("no port in startup line: {line}"));
        Thv { child: Some(child), port, startup_line: line, stderr: captured }
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Everything the proxy has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().expect("stderr lock").clone()
    }

    /// Waits (bounded) until stderr contains `needle`; the log line may be written just
    /// after the response that caused it. Returns the whole stderr so far.
    pub fn wait_for_stderr(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.stderr();
            if log.contains(needle) {
                return log;
            }
            assert!(Instant::now() < deadline, "{needle:?} never appeared in stderr:\n{log}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port the diagnostics listener (`--diagnostics-port 0`) names on stderr.
    pub fn diagnostics_port(&self) -> u16 {
        let line = self.wait_for_stderr("diagnostics listener on http://");
        let after = line.split("diagnostics listener on http://127.0.0.1:").nth(1).expect("the address is logged");
        after.split('/').next().and_then(|p| p.parse().ok()).expect("a port")
    }

    /// The OS process id of the proxy.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends SIGTERM to the proxy (by its own PID).
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits (bounded) for the proxy to exit and returns its status.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(start.elapsed() < deadline, "thv did not exit within {deadline:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Thv {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The Prometheus text the diagnostics listener on `port` serves at `/metrics` (bounded).
pub async fn scrape_metrics(port: u16) -> String {
    reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("diagnostics answers")
        .text()
        .await
        .expect("a body")
}

/// Extracts N from "… on port N …".
fn parse_port(line: &str) -> Option<u16> {
    let rest = line.split("on port ").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Runs `thv` to completion with these arguments and returns (exit code, stdout, stderr).
/// Bounded: a `thv` that is still running after 20 s is killed and the test fails.
pub fn run_thv(args: &[&str]) -> (i32, String, String) {
    run_thv_env(args, &[])
}

/// As [`run_thv`], with these environment variables set.
pub fn run_thv_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    // The inherited variables go first, so that the caller's own are what the child sees.
    let child = Command::new(THV)
        .args(args)
        .env_remove("TOOLHIVE_DEBUG")
        .env_remove("TOOLHIVE_REMOTE_OAUTH_CLIENT_SECRET")
        .env_remove("TOOLHIVE_REMOTE_AUTH_BEARER_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run thv");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(STARTUP_DEADLINE) {
        Ok(out) => out.expect("wait for thv"),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            panic!("thv {args:?} did not exit within {STARTUP_DEADLINE:?}");
        }
    };
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
