//! Logs: lines on stderr through `tracing`, human-readable or, with `--log-format json`,
//! one JSON object per line. Info by default; `--debug` (or `TOOLHIVE_DEBUG`) adds one line
//! per request (with its `trace_id` when the request is traced; so do the lines about its call to
//! the target failing or breaking off). Token and header values are never logged
//! at any level: log fields are chosen explicitly, never whole requests.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the global subscriber, and a panic hook that reports a panic as one log line.
pub(crate) fn init(debug: bool, json: bool) {
    // One line with the location, through the same subscriber, instead of the default
    // hook's separate stderr text; request tasks catch the unwind and answer 500.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        tracing::error!(%location, "internal error (panic): {message}");
    }));
    // thv's own events at info (debug with --debug), the libraries' from warn: a fixed
    // filter, so no directive parser (and no regex engine) is linked in.
    let filter =
        Targets::new().with_target("thv", if debug { Level::DEBUG } else { Level::INFO }).with_default(Level::WARN);
    if json {
        let fmt = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_current_span(false)
            .with_span_list(false);
        let _ = tracing_subscriber::registry().with(fmt).with(filter).try_init();
    } else {
        let fmt = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_target(false);
        let _ = tracing_subscriber::registry().with(fmt).with(filter).try_init();
    }
}
