//! The two ends that face the stdio client (MCP 2025-11-25 Transports §stdio): lines read
//! from stdin, lines written to stdout.
//!
//! Each end is one plain thread rather than Tokio's stdin/stdout: a blocking read of a
//! stdin that never closes, or a write to a client that stopped reading, would otherwise
//! sit in Tokio's blocking pool and hold the runtime's shutdown. A thread that is blocked
//! when the bridge exits simply ends with the process.
//!
//! stdout belongs to the writer thread alone, and every write is one whole line (the
//! message and its `\n` in one buffer), so no two messages can interleave and no log line
//! can get in between. What waits to be written is bounded in bytes ([`Output`]).

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Lines read ahead of the bridge: a little slack, so a burst of small messages does not
/// stall the reader, and little memory (each may be up to the message limit).
const READ_AHEAD: usize = 4;

/// Messages queued for stdout at most, whatever their size.
const WRITE_QUEUE: usize = 1024;

/// Bytes queued for stdout at least (more when the message limit is larger): the memory a
/// client that stops reading can make the bridge hold.
const MIN_WRITE_BUDGET: usize = 16 << 20;

/// What the reader found on stdin.
#[derive(Debug)]
pub(crate) enum Input {
    /// One line, without its `\n` (and without a `\r` before it).
    Line(Vec<u8>),
    /// A line longer than the limit; its bytes were read and dropped as they came.
    TooLong,
}

/// Starts the stdin reader. The channel closes at end of input (or a read error).
pub(crate) fn spawn_reader(max: usize) -> mpsc::Receiver<Input> {
    let (tx, rx) = mpsc::channel(READ_AHEAD);
    let spawned = std::thread::Builder::new().name("thv-stdin".into()).spawn(move || {
        let stdin = std::io::stdin();
        read_lines(stdin.lock(), max, |input| tx.blocking_send(input).is_ok());
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the stdin reader: {e}");
    }
    rx
}

/// Splits `input` into lines of at most `max` bytes and hands each to `deliver` until it
/// returns false. A longer line costs no more than `max` bytes: it is dropped as it comes.
fn read_lines(mut input: impl BufRead, max: usize, mut deliver: impl FnMut(Input) -> bool) {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!("reading stdin failed: {e}");
                return;
            }
        };
        if buf.is_empty() {
            // End of input: a last line without its `\n` still counts.
            if too_long {
                deliver(Input::TooLong);
            } else if !line.is_empty() {
                deliver(Input::Line(finish(line)));
            }
            return;
        }
        let (take, complete) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i, true),
            None => (buf.len(), false),
        };
        if !too_long {
            if line.len() + take > max.saturating_add(1) {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(&buf[..take]);
            }
        }
        input.consume(take + usize::from(complete));
        if complete {
            let item = if std::mem::take(&mut too_long) {
                Input::TooLong
            } else {
                Input::Line(finish(std::mem::take(&mut line)))
            };
            if matches!(&item, Input::Line(l) if l.len() > max) {
                if !deliver(Input::TooLong) {
                    return;
                }
            } else if !deliver(item) {
                return;
            }
        }
    }
}

/// A line without the `\r` of a CRLF ending.
fn finish(mut line: Vec<u8>) -> Vec<u8> {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    line
}

/// The way to stdout. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Output {
    tx: mpsc::Sender<(Vec<u8>, OwnedSemaphorePermit)>,
    /// One permit per queued byte.
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

/// The writer thread: it has finished once `done` yields (all queued lines written, or
/// stdout closed).
pub(crate) struct Writer {
    done: std::sync::mpsc::Receiver<()>,
}

impl Writer {
    /// Waits (bounded) until every queued line is written, once every [`Output`] is gone.
    pub(crate) fn finish(self, limit: Duration) {
        let _ = self.done.recv_timeout(limit);
    }
}

/// Starts the stdout writer. `closed` is cancelled when stdout cannot be written any more
/// (the client went away), which ends the bridge.
pub(crate) fn spawn_writer(max_message: usize, closed: CancellationToken) -> (Output, Writer) {
    let budget_bytes = MIN_WRITE_BUDGET.max(max_message.saturating_mul(2)).min(u32::MAX as usize);
    let (tx, mut rx) = mpsc::channel::<(Vec<u8>, OwnedSemaphorePermit)>(WRITE_QUEUE);
    let (done_tx, done) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new().name("thv-stdout".into()).spawn(move || {
        let stdout = std::io::stdout();
        while let Some((line, permit)) = rx.blocking_recv() {
            let mut out = stdout.lock();
            if let Err(e) = out.write_all(&line).and_then(|()| out.flush()) {
                tracing::info!("stdout is closed ({e}); the client went away");
                closed.cancel();
                break;
            }
            drop(permit);
        }
        let _ = done_tx.send(());
    });
    if let Err(e) = spawned {
        tracing::error!("cannot start the stdout writer: {e}");
    }
    (Output { tx, budget: Arc::new(Semaphore::new(budget_bytes)), budget_bytes }, Writer { done })
}

impl Output {
    /// Queues one message (valid JSON without a line break) as one line. Waits while the
    /// queue is full; a message is dropped only when stdout is gone.
    pub(crate) async fn line(&self, mut message: Vec<u8>) {
        message.push(b'\n');
        let cost = u32::try_from(message.len().min(self.budget_bytes)).unwrap_or(u32::MAX);
        let Ok(permit) = self.budget.clone().acquire_many_owned(cost).await else { return };
        let _ = self.tx.send((message, permit)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Result<String, ()>> {
        let mut out = Vec::new();
        // A tiny buffer, so that lines cross reads.
        let reader = std::io::BufReader::with_capacity(3, input);
        read_lines(reader, max, |i| {
            out.push(match i {
                Input::Line(l) => Ok(String::from_utf8(l).unwrap()),
                Input::TooLong => Err(()),
            });
            true
        });
        out
    }

    #[test]
    fn lines_crlf_and_the_last_line_without_newline() {
        assert_eq!(
            lines(b"a\r\nbc\n\nlast", 10),
            vec![Ok("a".into()), Ok("bc".into()), Ok("".into()), Ok("last".into())]
        );
    }

    #[test]
    fn a_long_line_is_refused_and_the_next_one_read() {
        assert_eq!(
            lines(b"0123456789x\nok\n0123456789\n", 10),
            vec![Err(()), Ok("ok".into()), Ok("0123456789".into())]
        );
        assert_eq!(lines(b"0123456789\r\n", 10), vec![Ok("0123456789".into())], "the CR is not counted");
        assert_eq!(lines(b"0123456789xyz", 10), vec![Err(())], "at end of input too");
    }
}
