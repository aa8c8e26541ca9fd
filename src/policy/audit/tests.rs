//! The auditor end to end: files, modes, rotation, SIGHUP, a full queue, close, write errors.
//! Every test writes under its own temporary directory and removes it.

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::*;

/// A fresh directory under the system temp dir, unique to the test and the process.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("thv-audit-{test}-{}-{}", std::process::id(), json::uuid_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn file_config(path: &Path) -> AuditConfig {
    AuditConfig { log_file: Some(path.to_owned()), ..AuditConfig::default() }
}

fn event(name: &str) -> Event<'_> {
    Event {
        ty: EventType::McpToolCall,
        outcome: Outcome::Success,
        source_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        user_agent: Some("test"),
        request_id: None,
        subject: None,
        user_name: None,
        client_name: None,
        client_version: None,
        endpoint: "/mcp",
        http_method: "POST",
        mcp_method: Some("tools/call"),
        name: Some(name),
        request_data: None,
        response_data: None,
        jsonrpc_error: None,
        duration: Duration::from_millis(3),
    }
}

/// The `target.name` of every line of `path`, checking each is a whole JSON object.
fn names(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            v["target"]["name"].as_str().unwrap_or("").to_owned()
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

const CLOSE: Duration = Duration::from_secs(10);

#[test]
fn auditor_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Auditor>();
}

#[test]
fn start_needs_a_runtime() {
    assert!(matches!(Auditor::start(AuditConfig::default()), Err(AuditError::NoRuntime)));
}

#[tokio::test]
async fn creates_0600_and_appends_to_an_existing_file() {
    let dir = temp_dir("mode");
    let path = dir.join("audit.log");
    let auditor = Auditor::start(file_config(&path)).unwrap();
    assert_eq!(mode(&path), 0o600);
    auditor.log(&event("one"));
    auditor.close(CLOSE).await;
    drop(auditor);

    // A second run appends; an existing file's own mode is kept (here a deliberate 0640).
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let auditor = Auditor::start(file_config(&path)).unwrap();
    auditor.log(&event("two"));
    auditor.log(&event("three"));
    auditor.close(CLOSE).await;
    assert_eq!(names(&path), ["one", "two", "three"]);
    assert_eq!(mode(&path), 0o640);
    assert_eq!(auditor.dropped(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn missing_directory_is_an_error_naming_the_file() {
    let dir = temp_dir("missing");
    let path = dir.join("no/such/dir/audit.log");
    let Err(e) = Auditor::start(file_config(&path)) else { panic!("opened a file in a missing directory") };
    assert!(e.to_string().starts_with(&format!("cannot open the audit log {}: ", path.display())), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn reopen_follows_rotation_without_loss() {
    let dir = temp_dir("reopen");
    let path = dir.join("audit.log");
    let rotated = dir.join("audit.log.1");
    let auditor = Auditor::start(file_config(&path)).unwrap();
    auditor.log(&event("before"));
    std::fs::rename(&path, &rotated).unwrap();
    // The trigger SIGHUP pulls (tested through the signal below): queued after "before",
    // so "before" reaches the renamed file whenever the writer gets to it.
    auditor.tx.send(Msg::Reopen).await.unwrap();
    auditor.log(&event("after"));
    auditor.close(CLOSE).await;
    assert_eq!(names(&rotated), ["before"]);
    assert_eq!(names(&path), ["after"]);
    assert_eq!(mode(&path), 0o600, "the new file is 0600 too");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn sighup_reopens_the_file() {
    let dir = temp_dir("sighup");
    let path = dir.join("audit.log");
    let rotated = dir.join("audit.log.1");
    // `start` installs the SIGHUP handler before the signal is sent below.
    let auditor = Auditor::start(file_config(&path)).unwrap();
    auditor.log(&event("before"));
    std::fs::rename(&path, &rotated).unwrap();
    let status = std::process::Command::new("kill").arg("-HUP").arg(std::process::id().to_string()).status().unwrap();
    assert!(status.success());
    // The reopen creates the file again; wait for it (bounded: 10 s).
    let mut reopened = false;
    for _ in 0..500 {
        if path.exists() {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reopened, "SIGHUP did not reopen the audit log");
    auditor.log(&event("after"));
    auditor.close(CLOSE).await;
    assert_eq!(names(&rotated), ["before"]);
    assert_eq!(names(&path), ["after"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn full_queue_drops_and_counts_without_blocking_then_close_drains() {
    let dir = temp_dir("full");
    let path = dir.join("audit.log");
    let config = file_config(&path);
    // The writer is not running yet: the queue (4 lines) can only fill up.
    let (auditor, writer) = Auditor::build(&config, writer::Sink::open(Some(&path)).unwrap(), 4);
    let started = Instant::now();
    for i in 0..10 {
        auditor.log(&event(&format!("e{i}")));
    }
    assert!(started.elapsed() < Duration::from_secs(2), "log must never wait");
    assert_eq!(auditor.dropped(), 6);
    assert_ne!(auditor.last_drop_warning.load(Ordering::Relaxed), 0, "the drop was warned about");
    let thread = std::thread::spawn(move || writer.run());
    auditor.close(CLOSE).await;
    assert_eq!(names(&path), ["e0", "e1", "e2", "e3"]);
    // Closed: later events are counted, not written.
    auditor.log(&event("late"));
    assert_eq!(auditor.dropped(), 7);
    thread.join().unwrap();
    // A second close returns at once (the writer is gone).
    let again = Instant::now();
    auditor.close(CLOSE).await;
    assert!(again.elapsed() < Duration::from_secs(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_writes_everything_queued() {
    let dir = temp_dir("drain");
    let path = dir.join("audit.log");
    let auditor = Arc::new(Auditor::start(file_config(&path)).unwrap());
    let mut tasks = Vec::new();
    for t in 0..4 {
        let auditor = Arc::clone(&auditor);
        tasks.push(tokio::spawn(async move {
            for i in 0..500 {
                auditor.log(&event(&format!("{t}-{i}")));
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    auditor.close(CLOSE).await;
    let written = names(&path);
    assert_eq!(written.len() as u64 + auditor.dropped(), 2000);
    assert_eq!(auditor.dropped(), 0, "2000 events fit the 8192-line queue");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_write_error_is_counted_never_fatal() {
    // /dev/full fails every write with ENOSPC, as a full disk does.
    let auditor = Auditor::start(file_config(Path::new("/dev/full"))).unwrap();
    for i in 0..3 {
        auditor.log(&event(&format!("e{i}")));
    }
    auditor.close(CLOSE).await;
    assert_eq!(auditor.dropped(), 3);
}

#[tokio::test]
async fn filters_follow_event_types_and_exclusions() {
    let dir = temp_dir("filter");
    let path = dir.join("audit.log");
    let config = AuditConfig {
        event_types: vec![EventType::McpToolCall, EventType::McpPing],
        exclude_event_types: vec![EventType::McpPing],
        ..file_config(&path)
    };
    let auditor = Auditor::start(config).unwrap();
    assert!(auditor.wants(EventType::McpToolCall));
    assert!(!auditor.wants(EventType::McpPing), "the exclusion wins");
    assert!(!auditor.wants(EventType::HttpRequest), "not listed");
    auditor.log(&Event { ty: EventType::HttpRequest, ..event("skipped") });
    auditor.log(&event("kept"));
    auditor.close(CLOSE).await;
    assert_eq!(names(&path), ["kept"]);
    assert_eq!(auditor.dropped(), 0, "filtered events are not drops");

    let all = Auditor::build(&AuditConfig::default(), writer::Sink::Stdout, 1).0;
    assert!(EventType::ALL.iter().all(|ty| all.wants(*ty)));
    assert!(!all.wants_request_data() && !all.wants_response_data());
    assert!(all.detects_application_errors());
    assert_eq!(all.max_data_size(), 1024);
    std::fs::remove_dir_all(&dir).unwrap();
}
