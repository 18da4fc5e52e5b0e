//! The process's own resource use for `/metrics`, named as the Prometheus process
//! collector names them (`process_resident_memory_bytes`, `process_open_fds`, ...) so
//! stock dashboards and alerts work. prometheus-client has no process collector, so
//! these are read from `/proc/self` at scrape time (a few small reads, admin-only);
//! where `/proc` is missing (not Linux) they are left out.

use std::fmt::Write as _;

/// The process figures as OpenMetrics text (empty where `/proc` cannot be read).
pub fn render() -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, sample: &str, value: f64| {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{sample} {value}\n");
    };
    if let Some((virt, resident)) = memory() {
        metric(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            "process_resident_memory_bytes",
            resident,
        );
        metric(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            "process_virtual_memory_bytes",
            virt,
        );
    }
    if let Some(fds) = open_fds() {
        metric("process_open_fds", "gauge", "Number of open file descriptors.", "process_open_fds", fds);
    }
    if let Some(max) = max_fds() {
        metric("process_max_fds", "gauge", "Maximum number of open file descriptors.", "process_max_fds", max);
    }
    if let Some(stat) = Stat::read() {
        metric(
            "process_cpu_seconds",
            "counter",
            "Total user and system CPU time spent in seconds.",
            "process_cpu_seconds_total",
            stat.cpu_seconds,
        );
        if let Some(start) = stat.start_time_seconds {
            metric(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                "process_start_time_seconds",
                start,
            );
        }
    }
    out
}

fn page_size() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as f64
    } else {
        4096.0
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// (virtual, resident) bytes from `/proc/self/statm` (sizes in pages).
fn memory() -> Option<(f64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut fields = statm.split_whitespace().map(|f| f.parse::<f64>().ok());
    let virt = fields.next()??;
    let resident = fields.next()??;
    let page = page_size();
    Some((virt * page, resident * page))
}

fn open_fds() -> Option<f64> {
    // The directory's own handle is one of the entries while it is read: left out.
    let count = std::fs::read_dir("/proc/self/fd").ok()?.count();
    Some(count.saturating_sub(1) as f64)
}

fn max_fds() -> Option<f64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

struct Stat {
    cpu_seconds: f64,
    start_time_seconds: Option<f64>,
}

impl Stat {
    /// CPU time and start time from `/proc/self/stat` (clock ticks; the start relative
    /// to boot, whose epoch time is `btime` in `/proc/stat`).
    fn read() -> Option<Stat> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) is in parentheses and may hold spaces: fields
        // are counted after its closing one, starting with field 3 (state).
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
        let ticks = clock_ticks();
        let cpu_seconds = (field(14)? + field(15)?) / ticks;
        let start_time_seconds = boot_time().zip(field(22)).map(|(boot, start)| boot + start / ticks);
        Some(Stat { cpu_seconds, start_time_seconds })
    }
}

fn boot_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn figures_are_plausible() {
        let text = super::render();
        let value = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{text}"));
            line[name.len() + 1..].parse().unwrap()
        };
        assert!(value("process_resident_memory_bytes") > 1_000_000.0, "{text}");
        assert!(value("process_open_fds") >= 3.0, "{text}");
        assert!(value("process_cpu_seconds_total") >= 0.0, "{text}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(start > now - 86_400.0 * 30.0 && start <= now + 1.0, "{start} vs {now}");
    }
}
