//! The final report: what users care about, as text for people and one JSON line for tools,
//! and the verdict (clean or not) that sets the exit status.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::stats::fmt_us;

/// Latency percentiles, µs.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

/// The gateway's cost, from /proc.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GatewayCost {
    pub pid: u32,
    /// CPU seconds over the measured window.
    pub cpu_secs_window: f64,
    /// Cores busy on average over the measured window.
    pub cpu_cores_window: f64,
    /// CPU seconds from before the ramp to the end of the run.
    pub cpu_secs_run: f64,
    pub rss_before_bytes: u64,
    pub rss_after_ramp_bytes: u64,
    pub rss_max_sampled_bytes: u64,
    /// VmHWM at the end: the peak over the process's life.
    pub peak_rss_bytes: u64,
    /// (RSS after the ramp − RSS before) / subscribed connections.
    pub rss_per_connection_bytes: Option<u64>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Report {
    pub date: String,
    pub server: String,
    pub plan: String,
    pub source_ips: usize,
    pub target: usize,
    /// Connections actually attempted (the target, unless capped by the open-file limit).
    pub attempted: usize,
    pub subscribed: u64,
    pub failed: u64,
    pub failures: BTreeMap<String, u64>,
    /// Subscribed clients whose connection ended before the run did.
    pub disconnected: u64,
    pub subscription_mismatch: u64,
    pub ramp_secs: f64,

    /// `kafka`, `publisher` or `none`.
    pub producing: String,
    pub produce_rate_target: f64,
    pub produce_rate_achieved: f64,
    pub events_produced: u64,
    pub events_measured: u64,
    pub produce_failed: u64,
    pub measured_secs: f64,

    /// `None` when it cannot be known (publisher mode).
    pub deliveries_expected: Option<u64>,
    pub deliveries_received: u64,
    pub deliveries_per_sec: f64,
    pub lost: Option<u64>,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub unexpected: u64,
    pub bad_frames: u64,
    pub error_frames: u64,
    /// Sequence numbers (warm-up included) never received by clients that stayed.
    pub missing_by_sequence: u64,

    pub latency_us: Latency,
    pub gateway: Option<GatewayCost>,
    pub loadtest_cpu_secs: f64,
    /// The loadtest's CPU over the measured window, in cores.
    pub loadtest_cores_window: f64,
    pub loadtest_peak_rss_bytes: u64,
    /// Cores busy on the whole machine over the measured window (gateway, loadtest, broker
    /// and anything else running): how contended the measurement was.
    pub machine_cores_busy_window: f64,
    /// Load averages (1, 5, 15 min) at the end of the run.
    pub machine_load_avg: String,

    pub interrupted: bool,
    pub notes: Vec<String>,
    pub clean: bool,
}

impl Report {
    /// Clean: every connection up and stayed, nothing lost, duplicated, reordered, misrouted.
    pub fn verdict(&self) -> bool {
        self.failed == 0
            && self.disconnected == 0
            && self.subscription_mismatch == 0
            && self.attempted == self.target
            && self.lost.unwrap_or(0) == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.unexpected == 0
            && self.bad_frames == 0
            && self.error_frames == 0
            && self.missing_by_sequence == 0
            && self.produce_failed == 0
            && !self.interrupted
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The report for people.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &str, v: String| {
            s.push_str(&format!("  {k:<13} {v}\n"));
        };
        line("date", self.date.clone());
        line(
            "server",
            format!(
                "{} (clients from {} source address(es))",
                self.server, self.source_ips
            ),
        );
        line("plan", self.plan.clone());
        let failures = if self.failures.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                self.failures
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        line(
            "connections",
            format!(
                "{} target, {} attempted, {} subscribed in {:.1}s, {} failed{failures}, {} disconnected early, {} confirmations differing from the plan",
                self.target,
                self.attempted,
                self.subscribed,
                self.ramp_secs,
                self.failed,
                self.disconnected,
                self.subscription_mismatch
            ),
        );
        line(
            "producing",
            format!(
                "{}: {:.1} events/s target, {:.1} achieved; {} events acknowledged ({} measured over {:.1}s), {} failed",
                self.producing,
                self.produce_rate_target,
                self.produce_rate_achieved,
                self.events_produced,
                self.events_measured,
                self.measured_secs,
                self.produce_failed
            ),
        );
        let expected = self
            .deliveries_expected
            .map_or_else(|| "unknown".to_owned(), |e| e.to_string());
        let lost = self
            .lost
            .map_or_else(|| "not measurable".to_owned(), |l| l.to_string());
        line(
            "deliveries",
            format!(
                "expected {expected}, received {} ({:.0}/s), lost {lost}, duplicates {}, out-of-order {}, unexpected {}, bad frames {}, error frames {}, missing by sequence {}",
                self.deliveries_received,
                self.deliveries_per_sec,
                self.duplicates,
                self.out_of_order,
                self.unexpected,
                self.bad_frames,
                self.error_frames,
                self.missing_by_sequence
            ),
        );
        let l = &self.latency_us;
        line(
            "latency",
            format!(
                "produce → client over {} deliveries: p50 {}, p90 {}, p99 {}, p99.9 {}, max {}, mean {}",
                l.count,
                fmt_us(l.p50),
                fmt_us(l.p90),
                fmt_us(l.p99),
                fmt_us(l.p999),
                fmt_us(l.max),
                fmt_us(l.mean as u64)
            ),
        );
        match &self.gateway {
            Some(g) => line(
                "gateway",
                format!(
                    "pid {}: CPU {:.1}s in the window ({:.2} cores), {:.1}s over the run; RSS {} before, {} after the ramp{}, max sampled {}, peak (VmHWM) {}",
                    g.pid,
                    g.cpu_secs_window,
                    g.cpu_cores_window,
                    g.cpu_secs_run,
                    mib(g.rss_before_bytes),
                    mib(g.rss_after_ramp_bytes),
                    g.rss_per_connection_bytes
                        .map(|b| format!(" ({:.1} KiB per connection)", b as f64 / 1024.0))
                        .unwrap_or_default(),
                    mib(g.rss_max_sampled_bytes),
                    mib(g.peak_rss_bytes)
                ),
            ),
            None => line("gateway", "no --gateway-pid: CPU and memory not measured".into()),
        }
        line(
            "loadtest",
            format!(
                "CPU {:.1}s ({:.2} cores in the window), peak RSS {}",
                self.loadtest_cpu_secs,
                self.loadtest_cores_window,
                mib(self.loadtest_peak_rss_bytes)
            ),
        );
        line(
            "machine",
            format!(
                "{:.2} of its cores busy in the window (everything), load average {}",
                self.machine_cores_busy_window, self.machine_load_avg
            ),
        );
        for n in &self.notes {
            line("note", n.clone());
        }
        line(
            "verdict",
            if self.clean {
                "CLEAN".into()
            } else {
                "NOT CLEAN (see above)".into()
            },
        );
        format!("loadtest report\n{s}")
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean() -> Report {
        Report {
            target: 10,
            attempted: 10,
            subscribed: 10,
            deliveries_expected: Some(100),
            deliveries_received: 100,
            lost: Some(0),
            ..Report::default()
        }
    }

    #[test]
    fn verdict_fails_on_any_integrity_problem() {
        assert!(clean().verdict());
        let cases: Vec<fn(&mut Report)> = vec![
            |r| r.lost = Some(1),
            |r| r.duplicates = 1,
            |r| r.out_of_order = 1,
            |r| r.unexpected = 1,
            |r| r.failed = 1,
            |r| r.disconnected = 1,
            |r| r.attempted = 9,
            |r| r.missing_by_sequence = 1,
            |r| r.produce_failed = 1,
            |r| r.interrupted = true,
        ];
        for (i, f) in cases.into_iter().enumerate() {
            let mut r = clean();
            f(&mut r);
            assert!(!r.verdict(), "case {i}");
        }
    }

    #[test]
    fn json_is_one_line_and_text_names_the_verdict() {
        let mut r = clean();
        r.clean = r.verdict();
        r.notes.push("multi\nline".into());
        let j = r.to_json();
        assert!(!j.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["lost"], 0);
        assert_eq!(v["clean"], true);
        let text = r.render();
        assert!(text.contains("CLEAN"));
        assert!(text.contains("lost 0"));
        let mut p = clean();
        p.lost = None;
        p.deliveries_expected = None;
        assert!(p.render().contains("lost not measurable"));
    }
}
