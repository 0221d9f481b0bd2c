//! Attune's process runner: the one engine that runs an action for `attune run --local`,
//! the server's embedded workers and remote workers. It serialises the parameters, delivers
//! them on stdin or in a 0400 file, starts the action under a supervisor in its own process
//! group with a clean environment, drains and masks its output, and enforces the timeout.

pub mod cancel;
pub mod capture;
pub mod datadir;
mod engine;
pub mod sandbox;
pub mod spawn;
pub mod workdir;

pub use cancel::CancelToken;
pub use capture::Captured;
pub use engine::*;
pub use sandbox::{RunAs, Sandbox};
pub use spawn::ExitStatus;
pub use workdir::{Workspace, WorkspaceError};
