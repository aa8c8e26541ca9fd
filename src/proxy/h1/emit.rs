//! The target's body on its way to the client on the own engine: de-framed, rewritten
//! where a rule says so (the legacy `endpoint` event, a list answer filtered by the MCP
//! policy), read by the audit log and telemetry, and framed again for the client.

use bytes::Bytes;

use super::body::{self, Decoder};
use crate::policy::Tap;
use crate::policy::filter::TooLarge;
use crate::proxy::rewrite::{Rewrite, too_large};
use crate::telemetry::Observation;

/// Who reads the answer's payload as it passes: the audit log's tap and telemetry.
pub(super) struct Readers<'a> {
    pub(super) tap: &'a mut Option<Box<Tap>>,
    pub(super) observed: &'a mut Option<Box<Observation>>,
}

/// Decodes target bytes into `out`, framed for the client; the bytes that belonged to
/// the body.
pub(super) fn emit(
    decoder: &mut Decoder,
    input: &[u8],
    out: &mut Vec<u8>,
    chunked: bool,
    rewrite: &mut Option<Rewrite>,
    sent: &mut u64,
    readers: Readers<'_>,
) -> Result<usize, EmitError> {
    let start = out.len();
    let used = decoder.decode(input, out)?;
    if let Some(scan) = rewrite.as_mut() {
        if let Some(data) = out.get(start..).filter(|data| !data.is_empty()) {
            let data = Bytes::copy_from_slice(data);
            out.truncate(start);
            match scan.feed(data) {
                Ok((passed, finished)) => {
                    out.extend_from_slice(&passed);
                    if finished {
                        *rewrite = None;
                    }
                }
                Err(e) => return Err(refuse(&e, scan.refusal(), out, start, chunked, sent)),
            }
        }
        if decoder.is_done()
            && let Some(scan) = rewrite.take()
        {
            let refusal = scan.refusal();
            match scan.finish() {
                Ok(rest) => out.extend_from_slice(&rest),
                Err(e) => return Err(refuse(&e, refusal, out, start, chunked, sent)),
            }
        }
    }
    // The payload, before the proxy's own chunk framing: what the exchange's record counts
    // and the audit log reads.
    if let Some(tap) = readers.tap.as_mut() {
        tap.observe(out.get(start..).unwrap_or_default());
    }
    if let Some(observed) = readers.observed.as_mut().filter(|o| o.reads_answer()) {
        observed.answer_bytes(out.get(start..).unwrap_or_default());
    }
    *sent = sent.saturating_add(out.len().saturating_sub(start) as u64);
    if chunked {
        body::frame_chunk(out, start);
        if decoder.is_done() {
            out.extend_from_slice(body::LAST_CHUNK);
        }
    }
    Ok(used)
}

/// Ends the body with `refusal` (what the client gets instead of a list answer too large
/// to filter) behind what `out` held before `start`: the client's answer is complete, the
/// target's connection is not reused.
pub(super) fn refuse(
    e: &TooLarge,
    refusal: Bytes,
    out: &mut Vec<u8>,
    start: usize,
    chunked: bool,
    sent: &mut u64,
) -> EmitError {
    too_large(e);
    out.truncate(start);
    out.extend_from_slice(&refusal);
    *sent = sent.saturating_add(refusal.len() as u64);
    if chunked {
        body::frame_chunk(out, start);
        out.extend_from_slice(body::LAST_CHUNK);
    }
    EmitError::Refused
}

/// Why a body could not be passed on as it came: its framing broke, or a list answer was
/// too large to filter and `out` now ends the answer with the refusal instead.
#[derive(Debug, thiserror::Error)]
pub(super) enum EmitError {
    #[error(transparent)]
    Body(#[from] body::BodyError),
    #[error("a list answer too large to filter was refused")]
    Refused,
}
