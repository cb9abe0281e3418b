//! Tracing initialisation and the process-wide Prometheus recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::TelemetryArgs;

/// Installs the global tracing subscriber (`LOG_LEVEL`, `LOG_FORMAT`). A second call (tests
/// running several services in one process) keeps the first subscriber.
pub fn init_tracing(args: &TelemetryArgs) {
    let filter = EnvFilter::try_new(&args.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if args.log_format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

/// Latency buckets (seconds) suited to a real-time pipeline: 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The process-wide Prometheus recorder, installed on first use; services render it on their
/// own `/metrics` route. Several services in one test process share it.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed; ours still renders what it sees.
            let _ = metrics::set_global_recorder(recorder);
            describe_shared();
            // Histograms buffer every sample until upkeep folds them in, which otherwise runs
            // only when someone scrapes: without a scraper memory would grow per delivery.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                    upkeep.run_upkeep();
                });
            handle
        })
        .clone()
}

/// `# HELP` for the metrics the shared Kafka code records in every service.
fn describe_shared() {
    use metrics::{describe_counter, describe_histogram, Unit};
    describe_counter!(
        "kafka_consumer_offset_resets_total",
        "Times a partition consumer's position was out of the log's range and was moved, by topic"
    );
    describe_counter!(
        "kafka_consumer_records_skipped_total",
        "Records a consumer passed over when its position was reset (deleted by retention, or in a replaced log), by topic"
    );
    describe_counter!(
        "kafka_consumer_errors_total",
        "Failed fetch attempts (retried with backoff), by topic"
    );
    describe_counter!(
        "kafka_produce_records_total",
        "Records produced, by topic and result (ok: acknowledged by the broker)"
    );
    describe_histogram!(
        "kafka_produce_batch_seconds",
        Unit::Seconds,
        "Time from sending a produce batch to the broker's answer, by topic"
    );
}
