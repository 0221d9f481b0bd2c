//! Executions (DESIGN.md §4): statuses and the record shown to users.

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// An execution's status.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Accepted, not yet scheduled.
    #[default]
    Requested,
    /// Assigned to a worker.
    Scheduled,
    /// The action's process is running.
    Running,
    /// Cancel requested while running.
    Canceling,
    /// Exited with code 0.
    Succeeded,
    /// Exited non-zero, was killed by a signal, or could not start.
    Failed,
    /// Killed after exceeding its timeout.
    Timeout,
    /// Stopped on request.
    Canceled,
    /// Its worker vanished; never re-run.
    Abandoned,
}

impl ExecutionStatus {
    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Requested => "requested",
            ExecutionStatus::Scheduled => "scheduled",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Canceling => "canceling",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Timeout => "timeout",
            ExecutionStatus::Canceled => "canceled",
            ExecutionStatus::Abandoned => "abandoned",
        }
    }

    /// All statuses.
    pub const ALL: [ExecutionStatus; 9] = [
        ExecutionStatus::Requested,
        ExecutionStatus::Scheduled,
        ExecutionStatus::Running,
        ExecutionStatus::Canceling,
        ExecutionStatus::Succeeded,
        ExecutionStatus::Failed,
        ExecutionStatus::Timeout,
        ExecutionStatus::Canceled,
        ExecutionStatus::Abandoned,
    ];

    /// Parses a lower-case status name.
    pub fn parse(s: &str) -> Option<ExecutionStatus> {
        ExecutionStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether no further transition is possible.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Succeeded
                | ExecutionStatus::Failed
                | ExecutionStatus::Timeout
                | ExecutionStatus::Canceled
                | ExecutionStatus::Abandoned
        )
    }
}

impl std::fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An execution as users see it, from the API, `attune execution get` and
/// `attune run -o json`, local or not (one shape). Parameters are redacted before they
/// get here.
#[derive(Debug, Clone, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Execution {
    /// Execution id; 0 for `attune run --local`, which is not stored.
    pub id: i64,
    /// `<pack>.<action>`.
    pub action_ref: String,
    /// Status.
    pub status: ExecutionStatus,
    /// Parameters, secret ones shown as `"********"`.
    pub parameters: Map<String, Value>,
    /// Encrypted secret values (never serialised).
    #[serde(skip)]
    #[schema(ignore)]
    pub secrets: Option<Vec<u8>>,
    /// The secret parameters filled from the secret store: parameter → `{name, scope}`.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub secret_refs: Map<String, Value>,
    /// env_vars given to the action.
    pub env_vars: BTreeMap<String, String>,
    /// The timeout requested for this execution, in seconds (else the action's).
    pub timeout_secs: Option<u64>,
    /// Who asked: a token's name, or the Unix user for a local run.
    pub requested_by: String,
    /// The worker that ran it (`local` for `attune run --local`).
    pub worker: Option<String>,
    /// The execution this one re-runs.
    pub rerun_of: Option<i64>,
    /// RFC 3339 time it was requested.
    pub created_at: String,
    /// RFC 3339 start time.
    pub started_at: Option<String>,
    /// RFC 3339 end time.
    pub finished_at: Option<String>,
    /// Wall time from start to end, in milliseconds.
    pub duration_ms: Option<u64>,
    /// Exit code, when the process exited.
    pub exit_code: Option<i32>,
    /// Signal number, when the process was killed by a signal.
    pub signal: Option<i32>,
    /// The JSON object on stdout's last non-empty line.
    pub result: Option<Value>,
    /// Captured stdout (masked, possibly truncated); left out of lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// Captured stderr (masked, possibly truncated); left out of lists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Why the execution failed outside the action's own exit code.
    pub error: Option<String>,
}

impl Execution {
    /// About how long this record is as JSON (see [`crate::format::json_len`]): a response
    /// buffer of this size holds a record with large parameters or output without growing.
    pub fn json_len(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        1024 + crate::format::map_json_len(&self.parameters)
            + self.result.as_ref().map_or(0, crate::format::json_len)
            + text(&self.stdout)
            + text(&self.stderr)
            + text(&self.error)
    }

    /// Sets `duration_ms` from the start and end times.
    pub fn with_duration(mut self) -> Execution {
        self.duration_ms = match (&self.started_at, &self.finished_at) {
            (Some(a), Some(b)) => match (parse_rfc3339_ms(a), parse_rfc3339_ms(b)) {
                (Some(a), Some(b)) if b >= a => Some((b - a) as u64),
                _ => None,
            },
            _ => None,
        };
        self
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 UTC time as [`rfc3339`] writes it
/// (`2026-11-25T04:00:59.123Z`; the fraction may be missing).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (main, frac) = s.split_once('.').unwrap_or((s, ""));
    let b = main.as_bytes();
    if b.len() != 19
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = main.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let ms = match frac.len() {
        0 => 0,
        n if n <= 9 && frac.bytes().all(|c| c.is_ascii_digit()) => {
            frac.parse::<i64>().ok()? * 1000 / 10i64.pow(n as u32)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + sec) * 1000) + ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats a Unix time (seconds and nanoseconds) as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn formats_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for ms in [0i64, 951_782_400_000, 1_795_000_000_123, 4_102_444_799_999] {
            let t = UNIX_EPOCH + Duration::from_millis(ms as u64);
            assert_eq!(parse_rfc3339_ms(&rfc3339(t)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339_ms("2026-11-18T11:06:40Z"),
            Some(1_795_000_000_000)
        );
        for bad in [
            "",
            "2026-11-18T11:06:40",
            "2026-13-18T11:06:40Z",
            "2026-11-18 11:06:40Z",
            "+026-11-18T11:06:40Z",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }
}
