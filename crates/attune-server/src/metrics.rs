//! `GET /metrics`: the server's metrics in the Prometheus (OpenMetrics) text format, through
//! `prometheus-client`. Counters and histograms count what this process's workers ran;
//! queue depth and live workers are read from the store at each scrape, so they cover
//! every worker process. Labels are action refs, statuses, delivery methods and formats:
//! never a parameter value.

use attune_core::ExecutionStatus;
use attune_runner::Outcome;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionStatus {
    action: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    method: String,
    format: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: String,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    executions: Family<ActionStatus, Counter>,
    duration: Family<ActionLabel, Histogram>,
    queue_wait: Histogram,
    delivered: Family<DeliveryLabels, Counter>,
    parameter_bytes: Histogram,
    delivery_time: Histogram,
    cleanup: Family<ResultLabel, Counter>,
    queue_depth: Gauge,
    live_workers: Gauge,
    running: Gauge,
    sandbox: Family<ModeLabel, Gauge>,
}

/// Seconds from 0.5 ms to about 9 min, doubling.
fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 21))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric, at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("attune");
        let executions = Family::<ActionStatus, Counter>::default();
        registry.register(
            "executions",
            "Executions this process's workers ended, by action and final status",
            executions.clone(),
        );
        let duration =
            Family::<ActionLabel, Histogram>::new_with_constructor(seconds_buckets as fn() -> _);
        registry.register_with_unit(
            "execution_duration",
            "How long the action ran, from its start to its end, by action",
            Unit::Seconds,
            duration.clone(),
        );
        let queue_wait = seconds_buckets();
        registry.register_with_unit(
            "queue_wait",
            "From the request being stored to the action's start",
            Unit::Seconds,
            queue_wait.clone(),
        );
        let delivered = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "parameter_deliveries",
            "Parameter documents delivered, by method (stdin, file) and format (json, dotenv, yaml)",
            delivered.clone(),
        );
        let parameter_bytes = Histogram::new(exponential_buckets(64.0, 4.0, 12));
        registry.register_with_unit(
            "parameter_size",
            "Size of the delivered parameter document",
            Unit::Bytes,
            parameter_bytes.clone(),
        );
        let delivery_time = seconds_buckets();
        registry.register_with_unit(
            "parameter_delivery",
            "Serialising the parameters and writing their file (stdin: serialising)",
            Unit::Seconds,
            delivery_time.clone(),
        );
        let cleanup = Family::<ResultLabel, Counter>::default();
        registry.register(
            "parameter_cleanups",
            "Execution directories (with their parameter file) removed after the run, by result (ok, failed)",
            cleanup.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Executions requested and not yet claimed by a worker (every worker process)",
            queue_depth.clone(),
        );
        let live_workers = Gauge::default();
        registry.register(
            "live_workers",
            "Worker processes whose lease is current (embedded ones included)",
            live_workers.clone(),
        );
        let running = Gauge::default();
        registry.register(
            "running_executions",
            "Executions this process's workers are running",
            running.clone(),
        );
        let sandbox = Family::<ModeLabel, Gauge>::default();
        registry.register(
            "sandbox",
            "1 for the sandbox mode in force (enforced, or degraded: Landlock or the namespaces are missing)",
            sandbox.clone(),
        );
        Metrics {
            registry,
            executions,
            duration,
            queue_wait,
            delivered,
            parameter_bytes,
            delivery_time,
            cleanup,
            queue_depth,
            live_workers,
            running,
            sandbox,
        }
    }

    /// Counts an execution that ran: `created_ms` is when it was stored (ms since the epoch).
    pub fn ran(&self, action: &attune_core::Action, created_ms: Option<i64>, o: &Outcome) {
        self.ended(&action.action_ref, o.status);
        self.duration
            .get_or_create(&ActionLabel {
                action: action.action_ref.clone(),
            })
            .observe(o.duration.as_secs_f64());
        let started_ms = o
            .started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .ok();
        if let (Some(c), Some(s)) = (created_ms, started_ms) {
            self.queue_wait
                .observe(Duration::from_millis(s.saturating_sub(c).max(0) as u64).as_secs_f64());
        }
        self.delivered
            .get_or_create(&DeliveryLabels {
                method: action.delivery.as_str().into(),
                format: action.format.as_str().into(),
            })
            .inc();
        self.parameter_bytes.observe(o.parameter_bytes as f64);
        self.delivery_time.observe(o.delivery_time.as_secs_f64());
        let result = if o.cleanup_ok { "ok" } else { "failed" };
        self.cleanup
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Counts an execution that ended without running (it could not be prepared).
    pub fn ended(&self, action: &str, status: ExecutionStatus) {
        self.executions
            .get_or_create(&ActionStatus {
                action: action.into(),
                status: status.as_str().into(),
            })
            .inc();
    }

    /// The text exposition, with the gauges set to what they are now.
    pub fn render(
        &self,
        queue_depth: i64,
        live_workers: i64,
        running: usize,
        sandbox_degraded: bool,
    ) -> String {
        self.queue_depth.set(queue_depth);
        self.live_workers.set(live_workers);
        self.running.set(running as i64);
        for (mode, on) in [
            ("enforced", !sandbox_degraded),
            ("degraded", sandbox_degraded),
        ] {
            self.sandbox
                .get_or_create(&ModeLabel { mode: mode.into() })
                .set(i64::from(on));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
