//! The audit log's writer: one dedicated thread owning the log file (or stdout), fed by a
//! bounded queue of finished lines.
//!
//! A thread rather than a tokio task because every write is a blocking system call: on a
//! slow or full disk (or NFS) it would stall a runtime worker, and the proxy often runs a
//! single-worker runtime. The thread blocks on the queue, writes whatever has accumulated in
//! one `write` (whole lines only, each ending in `\n`; the file is opened `O_APPEND`, so
//! another process appending to the same file never lands inside our line), reopens the file
//! when asked (SIGHUP, for log rotation) and, on close, writes what is left and fsyncs.
//!
//! ToolHive (`config.go` `GetLogWriter`) opens `logFile` with `O_CREATE|O_WRONLY|O_APPEND`,
//! mode 0600, and writes each event synchronously on the request's goroutine.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn};

use super::line::Settings;

/// What the writer thread is told.
pub(super) enum Msg {
    /// A line to render here, off the request path (see `Auditor::log_later`).
    Deferred(Deferred),
    /// Reopen the log file by its path (after rotation); lines queued before go to the old
    /// file, lines after to the new one.
    Reopen,
    /// Write everything queued, fsync, answer, and stop.
    Close(oneshot::Sender<()>),
}

/// Renders one line on the writer's thread, with the auditor's settings.
pub(super) type Deferred = Box<dyn FnOnce(&Settings) -> String + Send>;

/// Lines are gathered up to this many bytes per `write`.
const BATCH_BYTES: usize = 64 * 1024;

/// Where the lines go.
pub(super) enum Sink {
    /// ToolHive's default when `logFile` is unset.
    Stdout,
    File {
        path: PathBuf,
        file: File,
    },
}

impl Sink {
    pub(super) fn open(log_file: Option<&Path>) -> io::Result<Sink> {
        match log_file {
            None => Ok(Sink::Stdout),
            Some(path) => Ok(Sink::File { path: path.to_owned(), file: open_log(path)? }),
        }
    }

    pub(super) fn is_file(&self) -> bool {
        matches!(self, Sink::File { .. })
    }

    fn describe(&self) -> String {
        match self {
            Sink::Stdout => "stdout".to_owned(),
            Sink::File { path, .. } => path.display().to_string(),
        }
    }

    /// Writes `buf`, returning how much of it reached the sink even on failure.
    fn write(&mut self, buf: &[u8]) -> (usize, io::Result<()>) {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                let result = write_counting(&mut out, buf);
                (result.0, result.1.and_then(|()| out.flush()))
            }
            Sink::File { file, .. } => write_counting(file, buf),
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        match self {
            Sink::Stdout => io::stdout().lock().flush(),
            Sink::File { file, .. } => file.sync_all(),
        }
    }

    fn reopen(&mut self) {
        let Sink::File { path, file } = self else { return };
        match open_log(path) {
            Ok(new) => {
                *file = new;
                info!(path = %path.display(), "audit log reopened");
            }
            // Nothing is lost: the lines keep going to the file already open.
            Err(e) => {
                error!(path = %path.display(), error = %e, "cannot reopen the audit log; still writing to the file open before")
            }
        }
    }
}

/// `write_all` that reports how many bytes were written before an error.
fn write_counting(w: &mut impl Write, buf: &[u8]) -> (usize, io::Result<()>) {
    let mut written = 0;
    while written < buf.len() {
        match w.write(&buf[written..]) {
            Ok(0) => return (written, Err(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

/// Opens (creating) the log for appending. A file this call creates gets mode 0600 exactly,
/// whatever the umask. An existing file keeps its mode, as in ToolHive: an administrator may
/// have given it to a log shipper's group on purpose (logrotate's `create 0640 root adm`),
/// so wider permissions are warned about, not changed.
pub(super) fn open_log(path: &Path) -> io::Result<File> {
    let created = OpenOptions::new().append(true).create_new(true).mode(0o600).open(path);
    let file = match created {
        Ok(file) => {
            // `mode` is filtered by the umask, which may have taken the owner's bits too.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            return Ok(file);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            OpenOptions::new().append(true).create(true).mode(0o600).open(path)?
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() && mode & 0o077 != 0 {
        warn!(
            path = %path.display(),
            mode = %format!("{mode:04o}"),
            "the audit log is accessible to group or others; left as is (chmod 600 to restrict it)"
        );
    }
    Ok(file)
}

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) rx: mpsc::Receiver<Msg>,
    pub(super) sink: Sink,
    /// Lines lost, shared with the auditor (which counts its own drops there too).
    pub(super) lost: Arc<AtomicU64>,
    /// The queue's capacity: bounds the drain at close.
    pub(super) capacity: usize,
    /// What deferred lines are rendered with.
    settings: Arc<Settings>,
    /// Lines lost in the current run of failed writes (0: writes succeed).
    failing: u64,
    /// A failed write stopped inside a line: the next write starts a new line first.
    torn: bool,
}

impl Writer {
    pub(super) fn new(
        rx: mpsc::Receiver<Msg>,
        sink: Sink,
        lost: Arc<AtomicU64>,
        capacity: usize,
        settings: Arc<Settings>,
    ) -> Writer {
        Writer { rx, sink, lost, capacity, settings, failing: 0, torn: false }
    }

    /// The thread's body; returns once closed, or once every sender is gone.
    pub(super) fn run(mut self) {
        let mut batch = Batch::default();
        while let Some(first) = self.rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Deferred(render) => batch.push(&render(&self.settings)),
                    Msg::Reopen => {
                        self.flush(&mut batch);
                        self.sink.reopen();
                    }
                    Msg::Close(done) => {
                        self.finish(&mut batch);
                        let _ = done.send(());
                        return;
                    }
                }
                if batch.bytes.len() < BATCH_BYTES {
                    next = self.rx.try_recv().ok();
                }
            }
            self.flush(&mut batch);
        }
        // The auditor was dropped without `close`.
        self.finish(&mut batch);
    }

    /// Writes what is queued (lines a `log` racing with `close` may still have added: at most
    /// the capacity), then fsyncs.
    fn finish(&mut self, batch: &mut Batch) {
        for _ in 0..self.capacity {
            match self.rx.try_recv() {
                Ok(Msg::Deferred(render)) => batch.push(&render(&self.settings)),
                Ok(Msg::Reopen) => {}
                Ok(Msg::Close(done)) => {
                    let _ = done.send(());
                }
                Err(_) => break,
            }
        }
        self.flush(batch);
        if let Err(e) = self.sink.sync() {
            error!(log = %self.sink.describe(), error = %e, "cannot sync the audit log");
        }
    }

    fn flush(&mut self, batch: &mut Batch) {
        if batch.lines == 0 {
            return;
        }
        if std::mem::take(&mut self.torn) {
            // End the partial line a failed write left, so every later line parses.
            let (_, result) = self.sink.write(b"\n");
            self.torn = result.is_err();
        }
        let (written, result) = self.sink.write(&batch.bytes);
        match result {
            Ok(()) if self.failing > 0 => {
                info!(log = %self.sink.describe(), lost = self.failing, "the audit log is writable again");
                self.failing = 0;
            }
            Ok(()) => {}
            Err(e) => {
                if self.failing == 0 {
                    // Once per run of failures: a full disk would otherwise log on every batch.
                    error!(log = %self.sink.describe(), error = %e, "cannot write the audit log; events are lost until it recovers");
                }
                // Lines that reached the file whole are not lost.
                let whole = batch.bytes[..written].iter().filter(|b| **b == b'\n').count() as u64;
                let lost = batch.lines - whole;
                self.failing += lost;
                self.lost.fetch_add(lost, Ordering::Relaxed);
                self.torn = written > 0 && batch.bytes.get(written - 1) != Some(&b'\n');
            }
        }
        batch.bytes.clear();
        batch.lines = 0;
    }
}

/// Lines gathered for one write.
#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

impl Batch {
    fn push(&mut self, line: &str) {
        self.bytes.extend_from_slice(line.as_bytes());
        self.bytes.push(b'\n');
        self.lines += 1;
    }
}
