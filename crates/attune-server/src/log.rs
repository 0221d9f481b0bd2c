//! The server's log: `tracing` events to stderr, as text or one JSON object per line.
//!
//! What is logged is chosen by `ATTUNE_LOG` (else `RUST_LOG`, else `info`): a level
//! (`debug`) or `target=level` directives (`info,attune_server=debug`). Each request runs in
//! a `request` span (method, route, caller, then status and duration); each execution in an
//! `execution` span (id, action, worker). No event or span field ever holds a parameter
//! value, a token or a secret: routes are logged as their templates, callers by their
//! token's name.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::FmtSpan;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `TIME LEVEL span{fields}: message fields`, for people (the target is left out).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Why the log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `ATTUNE_LOG`/`RUST_LOG` does not parse.
    #[error("{var}: cannot parse `{value}` as a log filter ({why}); use a level such as `debug` or directives such as `info,attune_server=debug`")]
    Filter {
        /// Which variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// The parser's reason.
        why: String,
    },
}

/// The filter from `ATTUNE_LOG`, else `RUST_LOG`, else `info`.
pub fn filter_from_env() -> Result<Targets, LogError> {
    for var in ["ATTUNE_LOG", "RUST_LOG"] {
        if let Ok(value) = std::env::var(var) {
            if value.trim().is_empty() {
                continue;
            }
            return value
                .trim()
                .parse::<Targets>()
                .map_err(|e| LogError::Filter {
                    var,
                    value,
                    why: e.to_string(),
                });
        }
    }
    Ok(Targets::new().with_default(tracing::Level::INFO))
}

/// Installs the process's log subscriber (once; later calls do nothing).
pub fn init(format: LogFormat) -> Result<(), LogError> {
    let filter = filter_from_env()?;
    let registry = tracing_subscriber::registry().with(filter);
    let base = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_span_events(FmtSpan::NONE);
    let _ = match format {
        LogFormat::Text => registry.with(base.with_target(false)).try_init(),
        LogFormat::Json => registry
            .with(base.json().with_current_span(true).with_span_list(false))
            .try_init(),
    };
    Ok(())
}
