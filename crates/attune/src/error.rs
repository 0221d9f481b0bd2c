//! How the binary reports a failure: one line on stderr and an exit code.

use std::process::ExitCode;

/// Exit code for bad input: invalid parameters, unknown action, bad metadata.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for internal failures: I/O, the runtime.
pub const EXIT_FAILURE: u8 = 1;

/// A failure of a command, already phrased for the user.
#[derive(Debug)]
pub struct CliError {
    code: u8,
    message: String,
    /// The HTTP status of the server's answer this error stands for, if any.
    http_status: Option<u16>,
}

impl CliError {
    /// Bad input from the user (exit 2).
    pub fn usage(message: impl std::fmt::Display) -> CliError {
        CliError {
            code: EXIT_USAGE,
            message: message.to_string(),
            http_status: None,
        }
    }

    /// Something failed that the user did not cause directly (exit 1).
    pub fn failure(message: impl std::fmt::Display) -> CliError {
        CliError {
            code: EXIT_FAILURE,
            message: message.to_string(),
            http_status: None,
        }
    }

    /// The same error, marked as the server's answer with this HTTP status.
    pub fn with_http_status(mut self, status: u16) -> CliError {
        self.http_status = Some(status);
        self
    }

    /// The HTTP status of the server's answer this error stands for, if any.
    pub fn http_status(&self) -> Option<u16> {
        self.http_status
    }

    /// The exit code as a number.
    #[cfg(test)]
    pub fn code(&self) -> u8 {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prints the message as one line.
    pub fn print(&self) {
        let one_line: String = self
            .message
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        eprintln!("attune: error: {one_line}");
    }

    /// The process exit code.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl From<attune_core::pack::PackError> for CliError {
    fn from(e: attune_core::pack::PackError) -> Self {
        CliError::usage(e)
    }
}

impl From<attune_runner::PrepareError> for CliError {
    fn from(e: attune_runner::PrepareError) -> Self {
        CliError::usage(e)
    }
}
