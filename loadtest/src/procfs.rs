//! CPU seconds and memory of a process from `/proc` (the gateway's, given its pid, and the
//! loadtest's own), and this process's open-file limit.

use std::path::Path;

/// Linux reports CPU times in clock ticks of `USER_HZ`, which is 100 on every architecture
/// Linux supports (`sysconf(_SC_CLK_TCK)` would need libc for a constant).
pub const TICKS_PER_SEC: f64 = 100.0;

/// What `/proc/PID/stat` and `/proc/PID/status` tell about one process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU time, seconds.
    pub cpu_secs: f64,
    /// Resident set size now, bytes.
    pub rss_bytes: u64,
    /// Peak resident set size over the process's life (VmHWM), bytes.
    pub peak_rss_bytes: u64,
}

/// Why `/proc` could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unexpected format of {what}: {line:?}")]
    Format { what: &'static str, line: String },
}

/// User + system CPU seconds from the text of `/proc/PID/stat`. The command name (field 2)
/// is in parentheses and may itself contain spaces and parentheses, so fields are counted
/// from the last `)`.
pub fn parse_stat_cpu(stat: &str) -> Result<f64, ProcError> {
    let bad = || ProcError::Format {
        what: "stat",
        line: stat.chars().take(200).collect(),
    };
    let rest = &stat[stat.rfind(')').ok_or_else(bad)? + 1..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields
        .get(11)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    let stime: u64 = fields
        .get(12)
        .and_then(|f| f.parse().ok())
        .ok_or_else(bad)?;
    Ok((utime + stime) as f64 / TICKS_PER_SEC)
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`), in bytes.
pub fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix(':')?;
        let mut it = v.split_whitespace();
        let n: u64 = it.next()?.parse().ok()?;
        match it.next() {
            Some("kB") | None => Some(n * 1024),
            Some(_) => None,
        }
    })
}

/// The soft "Max open files" limit from the text of `/proc/PID/limits`.
pub fn parse_open_files_limit(limits: &str) -> Option<u64> {
    limits.lines().find_map(|l| {
        let rest = l.strip_prefix("Max open files")?;
        let soft = rest.split_whitespace().next()?;
        if soft == "unlimited" {
            Some(u64::MAX)
        } else {
            soft.parse().ok()
        }
    })
}

/// Busy and total CPU seconds of the whole machine (all cores) from the text of `/proc/stat`:
/// tells how much of the machine other processes took during a run.
pub fn parse_machine_cpu(stat: &str) -> Option<(f64, f64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    if ticks.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks[3] + ticks.get(4).copied().unwrap_or(0);
    Some((
        (total - idle) as f64 / TICKS_PER_SEC,
        total as f64 / TICKS_PER_SEC,
    ))
}

/// The machine's busy and total CPU seconds so far.
pub fn machine_cpu() -> Option<(f64, f64)> {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .as_deref()
        .and_then(parse_machine_cpu)
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn read(path: &Path) -> Result<String, ProcError> {
    std::fs::read_to_string(path).map_err(|source| ProcError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Samples a process (`None` = this process).
pub fn sample(pid: Option<u32>) -> Result<ProcSample, ProcError> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}"),
        None => "/proc/self".to_owned(),
    };
    let stat = read(Path::new(&format!("{dir}/stat")))?;
    let status = read(Path::new(&format!("{dir}/status")))?;
    let missing = |what: &'static str| ProcError::Format {
        what,
        line: String::new(),
    };
    Ok(ProcSample {
        cpu_secs: parse_stat_cpu(&stat)?,
        rss_bytes: parse_status_kb(&status, "VmRSS").ok_or_else(|| missing("VmRSS"))?,
        peak_rss_bytes: parse_status_kb(&status, "VmHWM").ok_or_else(|| missing("VmHWM"))?,
    })
}

/// This process's soft open-file limit, when `/proc` tells it.
pub fn open_files_limit() -> Option<u64> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .as_deref()
        .and_then(parse_open_files_limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (ws gate)way) S 1 4242 4242 0 -1 4194560 1234 0 0 0 \
        1500 250 0 0 20 0 3 0 100 123456789 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";

    #[test]
    fn stat_cpu_counts_user_and_system_ticks() {
        assert!((parse_stat_cpu(STAT).unwrap() - 17.5).abs() < 1e-9);
        assert!(parse_stat_cpu("garbage").is_err());
        assert!(parse_stat_cpu("1 (x) S 1 2").is_err());
    }

    #[test]
    fn status_memory_lines() {
        let status = "Name:\tws-gateway\nVmPeak:\t  300000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kb(status, "VmRSS"), Some(100 * 1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmHWM"), Some(200 * 1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap"), None);
        assert_eq!(parse_status_kb(status, "Threads"), Some(3 * 1024));
    }

    #[test]
    fn open_files_limit_line() {
        let limits =
            "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             95000                95000                processes \n\
            Max open files            20000                20000                files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(20_000));
        assert_eq!(
            parse_open_files_limit(
                "Max open files            unlimited            unlimited            files"
            ),
            Some(u64::MAX)
        );
        assert_eq!(parse_open_files_limit("nothing"), None);
    }

    #[test]
    fn machine_cpu_line() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\nintr 1\n";
        let (busy, total) = parse_machine_cpu(stat).unwrap();
        assert!((busy - 1.5).abs() < 1e-9);
        assert!((total - 10.0).abs() < 1e-9);
        assert!(parse_machine_cpu("cpu0 1 2 3 4").is_none());
        assert!(machine_cpu().unwrap().1 > 0.0);
        assert_eq!(load_average().split(' ').count(), 3);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(None).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(s.peak_rss_bytes >= s.rss_bytes);
        assert!(s.cpu_secs >= 0.0);
        assert!(open_files_limit().unwrap() > 0);
        assert!(sample(Some(u32::MAX)).is_err());
    }
}
