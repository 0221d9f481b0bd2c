//! Executions (DESIGN.md §4): statuses and the record shown to users.

use serde_json::{Map, Value};

/// An execution's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// Accepted, not yet scheduled.
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

/// What a user sees of an execution. Parameters are redacted before they get here.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecutionRecord {
    /// Execution id.
    pub id: String,
    /// `<pack>.<action>`.
    pub action_ref: String,
    /// Status.
    pub status: ExecutionStatus,
    /// Parameters, secret ones shown as `"********"`.
    pub parameters: Map<String, Value>,
    /// env_vars given to the action.
    pub env_vars: std::collections::BTreeMap<String, String>,
    /// Exit code, when the process exited.
    pub exit_code: Option<i32>,
    /// Signal number, when the process was killed by a signal.
    pub signal: Option<i32>,
    /// The JSON object on stdout's last non-empty line.
    pub result: Option<Value>,
    /// Captured stdout (masked, possibly truncated).
    pub stdout: String,
    /// Captured stderr (masked, possibly truncated).
    pub stderr: String,
    /// Why the execution failed outside the action's own exit code.
    pub error: Option<String>,
    /// RFC 3339 start time.
    pub started_at: Option<String>,
    /// RFC 3339 end time.
    pub finished_at: Option<String>,
    /// Wall time in milliseconds.
    pub duration_ms: Option<u64>,
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
}
