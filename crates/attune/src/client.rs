//! A small blocking client of the Attune REST API (docs/api.md).
//!
//! The server is found through `ATTUNE_URL` and `ATTUNE_TOKEN`, else through the data dir's
//! `server.json` and `admin.token`. Error responses (`application/problem+json`) become
//! one-line [`CliError`]s: 4xx exit 2, 5xx and unreachable servers exit 1. The token is
//! sent only in the `Authorization` header and never appears in a message.

use crate::error::CliError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

/// How long to wait for a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an ordinary request (not a followed output stream) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// The most we read of an error body.
const ERROR_BODY_LIMIT: u64 = 1 << 20;
/// The most we read of a JSON answer.
const BODY_LIMIT: u64 = 256 << 20;

/// A connection to one Attune server with one token.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// An environment variable, if set and not blank.
fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

impl Client {
    /// Finds the server and the token: `ATTUNE_URL`/`ATTUNE_TOKEN`, else `server.json` and
    /// `admin.token` in `data_dir`.
    pub fn discover(data_dir: &Path) -> Result<Client, CliError> {
        let env_url = env_nonempty("ATTUNE_URL");
        let url = match &env_url {
            Some(u) => u.clone(),
            None => {
                wait_for_starting_server(data_dir);
                url_from_server_json(data_dir)?
            }
        };
        let token = match env_nonempty("ATTUNE_TOKEN") {
            Some(t) => t,
            // The local admin token goes only to the local server: never to whatever
            // ATTUNE_URL names, unless that is the server this data dir belongs to.
            None if env_url.is_some() && !same_server(&url, data_dir) => {
                return Err(CliError::usage(
                    "no API token: ATTUNE_URL is set but ATTUNE_TOKEN is not; set ATTUNE_TOKEN to a token of that server (an admin creates one with `attune token create --role operator`)",
                ))
            }
            None => token_from_file(data_dir)?,
        };
        Client::new(&url, &token)
    }

    /// A client of the server at `url` (http only) using `token`.
    pub fn new(url: &str, token: &str) -> Result<Client, CliError> {
        let base = url.trim().trim_end_matches('/').to_string();
        if let Some(rest) = base.strip_prefix("https://") {
            return Err(CliError::usage(format!(
                "ATTUNE_URL https://{rest}: this build of attune speaks plain http only; use an http:// URL (for example through an SSH tunnel)"
            )));
        }
        let Some(host) = base.strip_prefix("http://") else {
            return Err(CliError::usage(format!(
                "server URL `{base}` is not an http:// URL, e.g. http://127.0.0.1:8228"
            )));
        };
        if host.is_empty() || host.contains(['/', '?', '#', ' ']) {
            return Err(CliError::usage(format!(
                "server URL `{base}` must be http://HOST:PORT with no path"
            )));
        }
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CliError::usage(
                "the API token is empty or contains characters a token cannot have (spaces or control characters); check ATTUNE_TOKEN or admin.token",
            ));
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .user_agent(format!("attune/{}", env!("CARGO_PKG_VERSION")))
            .max_redirects(0)
            .build();
        Ok(Client {
            agent: ureq::Agent::new_with_config(config),
            base,
            auth: format!("Bearer {token}"),
        })
    }

    /// The server's base URL.
    #[cfg(test)]
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` → JSON.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let r = self.agent.get(self.url(path)).with(self).call();
        self.json(r)
    }

    /// `POST path` with a JSON body → JSON.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        let r = self.agent.post(self.url(path)).with(self).send_json(body);
        self.json(r)
    }

    /// `PUT path` with a JSON body → JSON.
    pub fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, CliError> {
        let r = self.agent.put(self.url(path)).with(self).send_json(body);
        self.json(r)
    }

    /// `DELETE path` → JSON.
    pub fn delete_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let r = self.agent.delete(self.url(path)).with(self).call();
        self.json(r)
    }

    /// `POST path` with no body → JSON.
    pub fn post_empty<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let r = self.agent.post(self.url(path)).with(self).send_empty();
        self.json(r)
    }

    /// `POST path` with raw bytes (`application/octet-stream`) → JSON.
    pub fn post_bytes<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T, CliError> {
        let r = self
            .agent
            .post(self.url(path))
            .header("Authorization", &self.auth)
            .header("Accept", "application/json")
            .content_type("application/octet-stream")
            .config()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .send(body);
        self.json(r)
    }

    /// `POST path` with a body that is already JSON text → JSON.
    pub fn post_json_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &[u8],
    ) -> Result<T, CliError> {
        let r = self
            .agent
            .post(self.url(path))
            .with(self)
            .content_type("application/json")
            .send(body);
        self.json(r)
    }

    /// `DELETE path`, expecting no content.
    pub fn delete(&self, path: &str) -> Result<(), CliError> {
        let r = self
            .agent
            .delete(self.url(path))
            .header("Authorization", &self.auth)
            .config()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .call();
        let _ = self.check(r)?;
        Ok(())
    }

    /// `GET path` of an NDJSON stream, with no time limit: the lines as they arrive.
    pub fn stream(&self, path: &str) -> Result<NdjsonLines, CliError> {
        let r = self
            .agent
            .get(self.url(path))
            .header("Authorization", &self.auth)
            .header("Accept", "application/x-ndjson")
            .call();
        let response = self.check(r)?;
        let reader = response.into_body().into_reader();
        Ok(NdjsonLines {
            reader: BufReader::new(Box::new(reader)),
            base: self.base.clone(),
        })
    }

    /// A response, or the error it stands for.
    fn check(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, CliError> {
        let mut response = r.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        if status < 300 {
            return Ok(response);
        }
        if status < 400 {
            // Not followed: the token would go wherever the redirect points.
            let to = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .map(|l| format!(" to {}", l.chars().take(200).collect::<String>()))
                .unwrap_or_default();
            return Err(CliError::failure(format!(
                "the server at {} answered with a redirect (HTTP {status}{to}), which is not followed; point ATTUNE_URL at the Attune server itself",
                self.base
            )));
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(ERROR_BODY_LIMIT)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        Err(status_error(status, &body, &self.base))
    }

    fn json<T: DeserializeOwned>(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, CliError> {
        let mut response = self.check(r)?;
        let bytes = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_vec()
            .map_err(|e| self.transport_error(e))?;
        let bytes = if bytes.is_empty() {
            b"null".to_vec()
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            CliError::failure(format!(
                "the server at {} sent an answer this client does not understand: {e}",
                self.base
            ))
        })
    }

    fn transport_error(&self, e: ureq::Error) -> CliError {
        transport_error(e, &self.base)
    }
}

/// A connection error as one line, exit 1.
fn transport_error(e: ureq::Error, base: &str) -> CliError {
    let why = match &e {
        ureq::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                return CliError::failure(format!(
                    "cannot reach the Attune server at {base}: connection refused (is `attune server` running?)"
                ))
            }
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof => {
                "the connection was closed".to_string()
            }
            _ => io.to_string(),
        },
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::Timeout(t) => format!("no answer in time ({t})"),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::BodyExceedsLimit(n) => format!("the answer is larger than {n} bytes"),
        other => other.to_string(),
    };
    CliError::failure(format!("cannot reach the Attune server at {base}: {why}"))
}

/// An HTTP error status as one line: 4xx exit 2, others exit 1.
fn status_error(status: u16, body: &str, base: &str) -> CliError {
    let problem: Option<Value> = serde_json::from_str(body).ok();
    let text = |k: &str| {
        problem
            .as_ref()
            .and_then(|p| p.get(k))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let errors: Vec<String> = problem
        .as_ref()
        .and_then(|p| p.get("errors"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| match e {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let mut message = match (text("detail"), text("title")) {
        (Some(d), _) => d,
        (None, Some(t)) => format!("{t} (HTTP {status})"),
        (None, None) => {
            let first = body.lines().map(str::trim).find(|l| !l.is_empty());
            match first {
                Some(l) if problem.is_none() => {
                    let l: String = l.chars().take(200).collect();
                    format!("HTTP {status} from {base}: {l}")
                }
                _ => format!("HTTP {status} from {base}"),
            }
        }
    };
    if !errors.is_empty() {
        let m = message.trim_end_matches(['.', ':', ' ']).to_string();
        message = format!("{m}: {}", errors.join("; "));
    }
    let e = match status {
        401 => CliError::usage(format!(
            "{message} (the server did not accept the API token: check ATTUNE_TOKEN, or admin.token in the data dir)"
        )),
        403 => CliError::usage(format!("permission denied: {message}")),
        400..=499 => CliError::usage(message),
        _ => CliError::failure(format!("the Attune server failed: {message}")),
    };
    e.with_http_status(status)
}

/// The URL in `<data dir>/server.json`.
fn url_from_server_json(data_dir: &Path) -> Result<String, CliError> {
    let path = data_dir.join("server.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CliError::failure(format!(
                "no Attune server configured: ATTUNE_URL is not set and {} does not exist (start one with `attune server`, or set ATTUNE_URL and ATTUNE_TOKEN)",
                path.display()
            )))
        }
        Err(e) => {
            return Err(CliError::failure(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| CliError::failure(format!("{}: malformed JSON: {e}", path.display())))?;
    match v.get("url").and_then(Value::as_str) {
        Some(u) if !u.trim().is_empty() => Ok(u.trim().to_string()),
        _ => Err(CliError::failure(format!(
            "{}: no \"url\" in it; set ATTUNE_URL",
            path.display()
        ))),
    }
}

/// How long a command waits for a server whose process has only just been started (`attune
/// server &` on the line before) to take its data dir.
const SERVER_APPEARS: Duration = Duration::from_secs(2);
/// How long it waits for a server that holds the data dir to be ready (`server.json`).
const SERVER_READY: Duration = Duration::from_secs(60);

/// Returns once `<data dir>/server.json` exists, or no server is starting there: a command
/// run just after `attune server &` waits for it instead of failing. A server is starting
/// while the pid in `server.lock` runs; a server process just launched may not have written
/// it yet, so a missing or empty lock is given [`SERVER_APPEARS`].
fn wait_for_starting_server(data_dir: &Path) {
    let json = data_dir.join("server.json");
    let start = std::time::Instant::now();
    while !json.exists() {
        let pid = std::fs::read_to_string(data_dir.join("server.lock"))
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok());
        // The pid of a server that has stopped may have been reused: it must still be an
        // `attune … server`.
        let serving = |pid: i32| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.split(|b| *b == 0).any(|a| a == b"server") && c.windows(6).any(|w| w == b"attune")
            })
        };
        let waiting = match pid {
            Some(pid) => serving(pid) && start.elapsed() < SERVER_READY,
            None => start.elapsed() < SERVER_APPEARS,
        };
        if !waiting {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `url` is the URL in `<data dir>/server.json`.
fn same_server(url: &str, data_dir: &Path) -> bool {
    url_from_server_json(data_dir)
        .is_ok_and(|local| local.trim_end_matches('/') == url.trim_end_matches('/'))
}

/// The token in `<data dir>/admin.token`.
fn token_from_file(data_dir: &Path) -> Result<String, CliError> {
    let path = data_dir.join("admin.token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
        Ok(_) => Err(CliError::usage(format!(
            "{} is empty; set ATTUNE_TOKEN",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(CliError::usage(format!(
            "no API token: ATTUNE_TOKEN is not set and {} does not exist (ask an admin for a token: `attune token create --role operator`)",
            path.display()
        ))),
        Err(e) => Err(CliError::usage(format!(
            "no API token: ATTUNE_TOKEN is not set and {} cannot be read ({e})",
            path.display()
        ))),
    }
}

/// Percent-encodes one path segment (an action ref, an execution id).
pub fn segment(s: &str) -> String {
    attune_core::percent_encode(s, "-_.~", false)
}

/// Percent-encodes a query value.
pub fn query_value(s: &str) -> String {
    segment(s)
}

/// The lines of an NDJSON answer, each parsed as JSON.
pub struct NdjsonLines {
    reader: BufReader<Box<dyn Read + Send>>,
    base: String,
}

impl Iterator for NdjsonLines {
    type Item = Result<Value, CliError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        loop {
            line.clear();
            match self.reader.read_until(b'\n', &mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    return Some(Err(CliError::failure(format!(
                        "lost the connection to the Attune server at {}: {e}",
                        self.base
                    ))))
                }
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(serde_json::from_slice(&line).map_err(|e| {
                CliError::failure(format!(
                    "the server at {} sent an output line this client does not understand: {e}",
                    self.base
                ))
            }));
        }
    }
}

/// Adds what every API request carries: the token and the JSON `Accept`, and the timeout.
trait WithAuth {
    fn with(self, client: &Client) -> Self;
}

impl<B> WithAuth for ureq::RequestBuilder<B> {
    fn with(self, client: &Client) -> Self {
        self.header("Authorization", &client.auth)
            .header("Accept", "application/json")
            .config()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(e: &CliError) -> String {
        e.message().to_string()
    }

    #[test]
    fn problem_json_becomes_one_line_with_every_error() {
        let body = r#"{"type":"about:blank","title":"Unprocessable Entity","status":422,"detail":"invalid parameters for core.echo.","errors":["`message` is required","`x` is not allowed"]}"#;
        let e = status_error(422, body, "http://h:1");
        assert!(msg(&e).contains(
            "invalid parameters for core.echo: `message` is required; `x` is not allowed"
        ));
        assert_eq!((e.code(), e.http_status()), (2, Some(422)));
    }

    #[test]
    fn server_errors_exit_1_and_plain_bodies_are_shown_briefly() {
        let e = status_error(502, "<html>\nBad gateway\n</html>", "http://h:1");
        assert_eq!(e.code(), 1);
        assert!(msg(&e).contains("HTTP 502 from http://h:1: <html>"));
        let e = status_error(404, r#"{"title":"Not Found","status":404}"#, "http://h:1");
        assert!(msg(&e).contains("Not Found (HTTP 404)"));
    }

    #[test]
    fn urls_are_checked_and_tokens_not_shown() {
        assert!(Client::new("https://x:1", "t").is_err());
        assert!(Client::new("ftp://x:1", "t").is_err());
        assert!(Client::new("http://x:1/api", "t").is_err());
        let e = Client::new("http://x:1", "bad token").err();
        assert!(e.is_some_and(|e| !msg(&e).contains("bad token")));
        let c = Client::new("http://x:1/", "secret-token");
        assert!(c.is_ok_and(|c| c.base() == "http://x:1" && !format!("{c:?}").contains("secret")));
    }

    #[test]
    fn segments_are_encoded() {
        assert_eq!(segment("core.echo"), "core.echo");
        assert_eq!(segment("../a b"), "..%2Fa%20b");
    }
}
