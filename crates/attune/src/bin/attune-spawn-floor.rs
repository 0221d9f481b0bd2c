//! The floor `attune bench` measures `attune run --local` against: a minimal program that
//! only spawns `bash SCRIPT` with the bytes of FILE on its stdin, waits, and exits with the
//! script's code. Installed next to `attune`.
//!
//!     attune-spawn-floor SCRIPT FILE

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(script), Some(file)) = (args.next(), args.next()) else {
        eprintln!("usage: attune-spawn-floor SCRIPT FILE");
        return ExitCode::from(2);
    };
    let doc = match std::fs::read(&file) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("attune-spawn-floor: {}: {e}", file.to_string_lossy());
            return ExitCode::from(2);
        }
    };
    let mut child = match Command::new("bash")
        .arg(script)
        .stdin(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("attune-spawn-floor: cannot start bash: {e}");
            return ExitCode::from(127);
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // The script may exit without reading: a broken pipe is its business.
        let _ = stdin.write_all(&doc);
    }
    match child.wait() {
        Ok(s) => ExitCode::from(s.code().map_or(1, |c| c as u8)),
        Err(_) => ExitCode::from(1),
    }
}
