//! Command-line interface (clap derive). One module per command under `cmd/`.

use crate::output::OutputFormat;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Attune runs automation actions and hands them their parameters, secrets included,
/// without exposing them on a command line, in the environment, or in logs.
#[derive(Debug, Parser)]
#[command(
    name = "attune",
    version,
    propagate_version = true,
    after_help = "The client commands (run without --local, execution, action, pack, token, secret, audit, worker list) talk to a server: ATTUNE_URL and ATTUNE_TOKEN if set, else the one `attune server` started on the data dir (its server.json and admin.token)."
)]
pub struct Cli {
    /// Data directory (default: $XDG_DATA_HOME/attune or ~/.local/share/attune).
    #[arg(long, global = true, env = "ATTUNE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands that talk to a server (`run` without `--local`; `worker list` too).
pub const CLIENT_COMMANDS: [&str; 7] = [
    "run",
    "execution",
    "action",
    "pack",
    "token",
    "secret",
    "audit",
];

/// What their help says of how they find the server.
pub const CLIENT_HELP: &str = "The server: ATTUNE_URL (its URL) and ATTUNE_TOKEN (an API token) if set, else the one `attune server` started on the data dir (its server.json and admin.token). `run --local` needs no server.";

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an action and wait for it, streaming its output; exits with the action's exit code.
    Run(RunArgs),
    /// Start the server: REST API, scheduler and embedded workers on the data dir's SQLite store.
    Server(ServerArgs),
    /// Executions on the server: list, inspect, follow, cancel, rerun.
    Execution(ExecutionArgs),
    /// Actions registered on the server.
    Action(ActionArgs),
    /// Register, list and remove packs on the server.
    Pack(PackArgs),
    /// API tokens (admin).
    Token(TokenArgs),
    /// Stored secrets: set (from stdin or a hidden prompt), list, delete, reveal (admin).
    Secret(SecretArgs),
    /// The audit log: who changed secrets, tokens and packs, cancelled executions, and
    /// which executions were given which secrets (admin).
    Audit(AuditArgs),
    /// Run a worker on a shared PostgreSQL database (`attune worker --database-url …`), or
    /// list the workers (`attune worker list`).
    Worker(WorkerArgs),
    /// Measure: N executions of a trivial bash action through the API against the same
    /// script spawned directly, in one run (throughput, latency percentiles, the ratio).
    Bench(BenchArgs),
}

/// `attune bench`.
#[derive(Debug, Args)]
#[command(
    after_help = "Without --url or --database-url it starts a server with SQLite in a temporary directory (removed afterwards), as many embedded workers as --concurrency. The baseline spawns `bash` on the same script with the same parameter bytes (stdin, or a 0400 file) at the same concurrency. Exits 1 if any run failed."
)]
pub struct BenchArgs {
    /// How many executions (and as many direct spawns for the baseline).
    #[arg(short = 'n', long = "executions", value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub executions: u32,

    /// How many at once: client threads, and the started server's embedded workers.
    #[arg(short = 'c', long, value_name = "C", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// Bench a running server instead (ATTUNE_TOKEN: an admin token; the bench pack
    /// `attune_bench` is registered there).
    #[arg(long, value_name = "URL", conflicts_with = "database_url")]
    pub url: Option<String>,

    /// Start the server on this PostgreSQL database with `--workers` `attune worker`
    /// processes (use a scratch database: the bench pack and executions stay in it).
    #[arg(long, value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// With --database-url: how many worker processes.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,

    /// A string parameter of this size: 0, 4k, 64MiB… (powers of 1024, at most 1 GiB).
    #[arg(long, value_name = "SIZE", default_value = "0", value_parser = crate::cmd::bench::parse_size)]
    pub payload: u64,

    /// How the action gets its parameters.
    #[arg(long, value_name = "HOW", default_value = "stdin", value_parser = ["stdin", "file"])]
    pub delivery: String,

    /// Their format.
    #[arg(long, value_name = "FORMAT", default_value = "json", value_parser = ["json", "dotenv", "yaml"])]
    pub format: String,

    /// Alternate the baseline and the executions through the API in this many rounds
    /// (each N/ROUNDS, in the order ABBA…), so that a machine whose speed drifts during the
    /// run slows both alike.
    #[arg(long, value_name = "ROUNDS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rounds: u32,

    /// Also time this many `attune run core.noop` against the server, each next to an
    /// `attune run --local core.noop` (0: skip).
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub cli_runs: u32,

    /// Output format: a table, or JSON/YAML for machines.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `attune worker`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct WorkerArgs {
    #[command(subcommand)]
    pub command: Option<WorkerCommand>,

    /// The shared database (PostgreSQL): `postgres://user@host:5432/db`.
    #[arg(
        long,
        value_name = "URL",
        env = "ATTUNE_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// How many executions it runs at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,

    /// Its name in `attune worker list` and in the executions it runs (default: host and
    /// pid). A worker that starts again under its name sweeps what it left in flight.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The key that seals secrets: the servers' key file (32 bytes, mode 0600). Without it
    /// the worker leaves executions with secret parameters to workers that have it.
    #[arg(long, value_name = "PATH", env = "ATTUNE_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,

    /// On SIGTERM, seconds running executions get to finish before they are cancelled.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub shutdown_grace: u64,

    /// Log lines on stderr as text, or one JSON object per line (ATTUNE_LOG picks what).
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"], env = "ATTUNE_LOG_FORMAT")]
    pub log_format: String,

    #[command(flatten)]
    pub engine: EngineArgs,

    /// Output format (for `list`).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = crate::output::OutputFormat::Table, global = true)]
    pub output: crate::output::OutputFormat,
}

/// `attune worker …` subcommands.
#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// The worker processes: name, host, concurrency, running, last heartbeat, state.
    List,
}

/// `attune run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The action, as <pack>.<action>.
    #[arg(value_name = "PACK.ACTION")]
    pub action: String,

    /// Parameters as key=value, coerced by the type the action's schema declares
    /// (lists: JSON or comma-separated; objects: JSON).
    #[arg(value_name = "KEY=VALUE")]
    pub params: Vec<String>,

    /// Run here, through the engine, without a server (for action authors).
    #[arg(long)]
    pub local: bool,

    /// A pack directory (or a directory of packs) to find the action in; repeatable.
    /// The bundled core pack is always available.
    #[arg(long, value_name = "DIR")]
    pub pack_dir: Vec<PathBuf>,

    /// Read parameters from a JSON or YAML file (`-` for stdin); key=value arguments
    /// override them. Use this for secret parameters.
    #[arg(long, value_name = "FILE")]
    pub params_file: Option<PathBuf>,

    /// Set an environment variable for the action (execution context, not parameters);
    /// repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Timeout in seconds; may lower the action's own timeout, never raise it.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,

    /// Output: `table` streams the action's output; `json`/`yaml` print the execution record.
    #[arg(long, short, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Do not wait: print the new execution's id (or, with -o json|yaml, its record) and exit.
    #[arg(long, conflicts_with = "local")]
    pub no_wait: bool,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// `attune server`.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on (port 0: any free port; the URL is written to <data dir>/server.json).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8228",
        env = "ATTUNE_LISTEN"
    )]
    pub listen: std::net::SocketAddr,

    /// Number of embedded workers (executions run at once); 0: the API only, with
    /// `attune worker`s on a shared PostgreSQL database running the executions.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub workers: usize,

    /// Largest request body, in MiB (parameters included).
    #[arg(long, value_name = "MIB", default_value_t = 100)]
    pub max_body_mib: usize,

    /// On SIGTERM, seconds running executions get to finish before they are cancelled.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub shutdown_grace: u64,

    /// The most HTTP connections served at once; one more gets a 503 and is closed. A
    /// client must send a request's headers within 10 s, or its connection is closed.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,

    /// The key that seals secrets (32 bytes, mode 0600); it must exist. Default:
    /// <data dir>/secret.key, generated at first start.
    #[arg(long, value_name = "PATH", env = "ATTUNE_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,

    /// The database: a PostgreSQL URL (`postgres://user@host/db`); default: the SQLite file
    /// <data dir>/attune.db. Migrations are applied at start.
    #[arg(
        long,
        value_name = "URL",
        env = "ATTUNE_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,

    /// Log lines on stderr as text, or one JSON object per line. What is logged:
    /// ATTUNE_LOG (else RUST_LOG), a level such as `debug` or directives such as
    /// `info,attune_server=debug`; default `info`.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"], env = "ATTUNE_LOG_FORMAT")]
    pub log_format: String,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// How actions are run; shared by `run --local` and `server`.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Interpreter for a runner type, e.g. python=/usr/bin/python3.12; repeatable.
    #[arg(
        long,
        value_name = "RUNNER=PROGRAM",
        env = "ATTUNE_INTERPRETERS",
        value_delimiter = ','
    )]
    pub interpreter: Vec<String>,

    /// Seconds between SIGTERM and SIGKILL when an action times out or is cancelled.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    pub kill_grace: f64,

    /// Bytes of stdout and of stderr kept in the execution record.
    #[arg(long, value_name = "BYTES", default_value_t = attune_runner::DEFAULT_OUTPUT_LIMIT)]
    pub output_limit: usize,

    /// The user actions run as (default when root: nobody; `--run-as root` opts out).
    #[arg(long, value_name = "USER")]
    pub run_as: Option<String>,

    /// Refuse to start where the kernel cannot sandbox actions (no Landlock), instead of
    /// running them degraded with a warning.
    #[arg(long)]
    pub require_sandbox: bool,
}

/// `attune execution`.
#[derive(Debug, Args)]
pub struct ExecutionArgs {
    #[command(subcommand)]
    pub command: ExecutionCommand,

    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `attune execution …`.
#[derive(Debug, Subcommand)]
pub enum ExecutionCommand {
    /// List executions, newest first.
    List {
        /// Only executions with this status (requested, scheduled, running, canceling,
        /// succeeded, failed, timeout, canceled, abandoned).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
        /// Only executions of this action (<pack>.<action>).
        #[arg(long, value_name = "PACK.ACTION")]
        action: Option<String>,
        /// At most this many (the server's default is 50).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=200))]
        limit: Option<u32>,
        /// Only executions older than this one (the next page: the last id shown).
        #[arg(long, value_name = "ID")]
        before: Option<u64>,
    },
    /// Show one execution.
    Get {
        /// Execution id.
        id: String,
    },
    /// Print an execution's output (stdout to stdout, stderr to stderr).
    Logs {
        /// Execution id.
        id: String,
        /// Keep following the output until the execution ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Cancel an execution: it is stopped if running, never started if not yet.
    Cancel {
        /// Execution id.
        id: String,
    },
    /// Run an execution again with the same parameters; prints the new execution's id.
    Rerun {
        /// Execution id.
        id: String,
    },
}

/// `attune action`.
#[derive(Debug, Args)]
pub struct ActionArgs {
    #[command(subcommand)]
    pub command: ActionCommand,

    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `attune action …`.
#[derive(Debug, Subcommand)]
pub enum ActionCommand {
    /// List the registered actions.
    List,
    /// Show an action: its settings and parameters.
    Show {
        /// The action, as <pack>.<action>.
        #[arg(value_name = "PACK.ACTION")]
        action: String,
    },
}

/// `attune pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    #[command(subcommand)]
    pub command: PackCommand,

    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `attune pack …`.
#[derive(Debug, Subcommand)]
pub enum PackCommand {
    /// Register (or update) the pack in a directory on the server (admin).
    Register {
        /// The pack directory (with pack.yaml).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// List the registered packs.
    List,
    /// Remove a pack and its actions (admin).
    Remove {
        /// The pack's ref.
        #[arg(value_name = "PACK")]
        pack: String,
    },
}

/// `attune token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,

    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `attune token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; it is printed once, and only its hash is stored.
    Create {
        /// What the token may do.
        #[arg(long, value_enum)]
        role: TokenRole,
        /// A name to recognise it by (default: <role>-token, e.g. operator-token).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// List the tokens: name, role, created, last used, revoked (never a token).
    List,
    /// Revoke a token by name (every unrevoked token of that name) or id; it is refused
    /// from then on.
    Revoke {
        /// The token's name or id.
        #[arg(value_name = "NAME|ID")]
        token: String,
    },
}

/// `attune secret`.
#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    pub command: SecretCommand,

    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// Where a stored secret applies: every action (the default), one pack's, or one action's.
#[derive(Debug, Args, Clone, Default)]
pub struct ScopeArgs {
    /// The secret applies to this pack's actions only.
    #[arg(long, value_name = "PACK", conflicts_with = "action")]
    pub pack: Option<String>,
    /// The secret applies to this action only.
    #[arg(long, value_name = "PACK.ACTION")]
    pub action: Option<String>,
}

/// `attune secret …`.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret (admin). The value is read from stdin (one final newline is dropped),
    /// or typed at a hidden prompt; never from the command line. Actions receive it in their `secret: true` parameter
    /// of the same name, nearest scope first (action, pack, global).
    Set {
        /// The secret's name.
        #[arg(value_name = "NAME")]
        name: String,
        /// Refused: a value on the command line is seen by every process (`ps`) and kept
        /// in shell history.
        #[arg(value_name = "VALUE", hide = true)]
        value: Option<String>,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Read the value as JSON (an object or a list, say) instead of as text.
        #[arg(long)]
        json: bool,
    },
    /// List stored secrets: name, scope, created and updated; never a value.
    List {
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Delete a stored secret (admin).
    Delete {
        /// The secret's name.
        #[arg(value_name = "NAME")]
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
    },
    /// Show a stored secret's value (admin, with --reveal; recorded in the audit log).
    Get {
        /// The secret's name.
        #[arg(value_name = "NAME")]
        name: String,
        #[command(flatten)]
        scope: ScopeArgs,
        /// Show the value.
        #[arg(long)]
        reveal: bool,
    },
}

/// `attune audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,

    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `attune audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List entries, newest first.
    List {
        /// Only entries since this time: RFC 3339 (`2026-11-25`, `2026-11-25T04:00Z`) or an
        /// age (`30m`, `12h`, `7d`).
        #[arg(long, value_name = "TIME|AGE")]
        since: Option<String>,
        /// Only this kind (`secret.reveal`) or family (`secret`, `token`, `execution`,
        /// `pack`).
        #[arg(long, value_name = "KIND")]
        kind: Option<String>,
        /// At most this many.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=200))]
        limit: Option<u32>,
        /// Only entries older than entry ID (page backwards).
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
    },
}

/// Roles of API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenRole {
    /// Everything: packs, tokens, secrets, and what operators may do.
    Admin,
    /// Run, cancel and rerun, and what viewers may do.
    Operator,
    /// Read only.
    Viewer,
}

impl TokenRole {
    /// The role's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::Operator => "operator",
            TokenRole::Viewer => "viewer",
        }
    }
}
