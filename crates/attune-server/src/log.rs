//! A minimal logger to stderr. Callers never pass parameter values or tokens.

fn line(level: &str, msg: &str) {
    eprintln!(
        "{} {level} {msg}",
        attune_core::execution::rfc3339(std::time::SystemTime::now())
    );
}

/// An informational line.
pub fn info(msg: &str) {
    line("INFO", msg);
}

/// A warning: something was wrong and was worked around.
pub fn warn(msg: &str) {
    line("WARN", msg);
}

/// An error line.
pub fn error(msg: &str) {
    line("ERROR", msg);
}
