//! `cgmalloc ps`, `cgmalloc stat` and `cgmalloc set`: what `target.rs` reads, as a
//! table, as the interface files' text, as JSON (one object per group, keys named as the
//! interface files) or in Prometheus's text exposition format; and a write requested of
//! the process.

use crate::memcg::psi::{Values, KINDS};
use crate::target::{self, Group, Outcome, Snapshot, Target, EVENT_NAMES, STAT_NAMES};
use crate::Fail;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// How `stat` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Prometheus,
}

/// Bytes for a person: `812`, `512K`, `12.3M`, `3.0G`.
pub fn human_bytes(v: u64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut x = v as f64;
    let mut u = 0;
    while x >= 1024.0 && u < UNITS.len() - 1 {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v}")
    } else if x < 10.0 {
        format!("{x:.1}{}", UNITS[u])
    } else {
        format!("{x:.0}{}", UNITS[u])
    }
}

/// A limit for a person: as [`human_bytes`], `max` for none.
fn human(v: Option<u64>) -> String {
    v.map_or_else(|| "max".to_string(), human_bytes)
}

/// `cgmalloc ps`: one line per process the caller may inspect that runs cgmalloc.
pub fn ps() -> Result<(), Fail> {
    println!(
        "{:>8}  {:<16} {:>9} {:>9} {:>7}",
        "PID", "COMMAND", "CURRENT", "MAX", "GROUPS"
    );
    for t in target::all() {
        match t.snapshot() {
            Ok(s) => {
                let root = &s.groups[0];
                println!(
                    "{:>8}  {:<16} {:>9} {:>9} {:>7}",
                    t.pid,
                    t.comm,
                    human(Some(root.current)),
                    human(root.max),
                    s.groups.len()
                );
            }
            Err(f) => println!(
                "{:>8}  {:<16} {:>9} {:>9} {:>7}  ({})",
                t.pid, t.comm, "-", "-", "-", f.message
            ),
        }
    }
    Ok(())
}

/// A subtree's sums: `memory.stat`'s engine keys and explicit bytes, `cgroup.stat`.
struct Sums {
    stats: [u64; 4],
    explicit: u64,
    stock: u64,
    descendants: u64,
    dying: u64,
}

fn sums(s: &Snapshot, g: &Group) -> Sums {
    let mut out = Sums {
        stats: [0; 4],
        explicit: 0,
        stock: 0,
        descendants: 0,
        dying: 0,
    };
    for d in s.subtree(g.id) {
        for (i, v) in d.stats.iter().enumerate() {
            out.stats[i] += v;
        }
        out.explicit += d.explicit;
        out.stock += d.stock;
        if d.id != g.id {
            if d.state == "dying" {
                out.dying += 1;
            } else {
                out.descendants += 1;
            }
        }
    }
    out
}

/// `memory.pressure` as the file reads (two lines, newline-terminated), or `None` from
/// a process that does not export it.
pub fn pressure_text(g: &Group) -> Option<String> {
    let mut out = Vec::new();
    g.pressure?.write(&mut |b| out.extend_from_slice(b));
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// `memory.pressure` as JSON: `{"some": {"avg10", "avg60", "avg300", "total"}, "full":
/// ...}` (averages in percent, totals in microseconds), `null` if not exported.
fn pressure_json(g: &Group) -> Value {
    let Some(v) = g.pressure else {
        return Value::Null;
    };
    let mut m = Map::new();
    for (k, kind) in KINDS.iter().enumerate() {
        let a = |w: usize| Values::percent(v.avg[k][w]);
        m.insert(
            kind.to_string(),
            json!({"avg10": a(0), "avg60": a(1), "avg300": a(2), "total": v.total_us[k]}),
        );
    }
    Value::Object(m)
}

fn limit_text(v: Option<u64>) -> String {
    v.map_or("max".to_string(), |b| b.to_string())
}

fn limit_json(v: Option<u64>) -> Value {
    v.map_or(json!("max"), |b| json!(b))
}

/// The interface files of `g` as JSON, keys named as the files.
fn group_json(t: &Target, s: &Snapshot, g: &Group) -> Value {
    let sum = sums(s, g);
    let keyed = |names: &[&str], vals: &[u64]| -> Value {
        Value::Object(
            names
                .iter()
                .zip(vals)
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect::<Map<_, _>>(),
        )
    };
    let mut stat = Map::new();
    stat.insert("stock".into(), json!(sum.stock));
    stat.insert("explicit".into(), json!(sum.explicit));
    for (k, v) in STAT_NAMES.iter().zip(sum.stats) {
        stat.insert(k.to_string(), json!(v));
    }
    json!({
        "pid": t.pid,
        "comm": t.comm,
        "group": g.path,
        "state": g.state,
        "memory.current": g.current,
        "memory.peak": g.peak,
        "memory.max": limit_json(g.max),
        "memory.high": limit_json(g.high),
        "memory.low": g.low,
        "memory.min": g.min,
        "memory.soft_limit_in_bytes": limit_json(g.soft_limit),
        "memory.failcnt": g.failcnt,
        "memory.events": keyed(&EVENT_NAMES, &g.events),
        "memory.events.local": keyed(&EVENT_NAMES, &g.events_local),
        "memory.stat": Value::Object(stat),
        "memory.oom.policy": g.oom_policy,
        "memory.enforce": g.enforce,
        "memory.pressure": pressure_json(g),
        "cgroup.stat": {
            "nr_descendants": sum.descendants,
            "nr_dying_descendants": sum.dying,
        },
        "cgroup.threads": g.tids,
        "nr_threads": g.nr_threads,
    })
}

fn group_text(out: &mut String, s: &Snapshot, g: &Group) {
    let sum = sums(s, g);
    let _ = writeln!(
        out,
        "{}{}",
        g.path,
        if g.state == "dying" { " (dying)" } else { "" }
    );
    let mut file = |name: &str, v: String| {
        let _ = writeln!(out, "  {name:<28}{v}");
    };
    file("memory.current", g.current.to_string());
    file("memory.peak", g.peak.to_string());
    file("memory.max", limit_text(g.max));
    file("memory.high", limit_text(g.high));
    file("memory.low", g.low.to_string());
    file("memory.min", g.min.to_string());
    file("memory.soft_limit_in_bytes", limit_text(g.soft_limit));
    file("memory.failcnt", g.failcnt.to_string());
    let kv = |names: &[&str], vals: &[u64]| {
        names
            .iter()
            .zip(vals)
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    file("memory.events", kv(&EVENT_NAMES, &g.events));
    file("memory.events.local", kv(&EVENT_NAMES, &g.events_local));
    let mut stat = vec![
        format!("stock {}", sum.stock),
        format!("explicit {}", sum.explicit),
    ];
    stat.extend(
        STAT_NAMES
            .iter()
            .zip(sum.stats)
            .map(|(k, v)| format!("{k} {v}")),
    );
    file("memory.stat", stat.join(", "));
    file("memory.oom.policy", g.oom_policy.to_string());
    file("memory.enforce", g.enforce.to_string());
    if let Some(p) = pressure_text(g) {
        let mut lines = p.lines();
        file(
            "memory.pressure",
            lines.next().unwrap_or_default().to_string(),
        );
        for l in lines {
            file("", l.to_string());
        }
    }
    file(
        "cgroup.stat",
        format!(
            "nr_descendants {}, nr_dying_descendants {}",
            sum.descendants, sum.dying
        ),
    );
    let tids: Vec<String> = g.tids.iter().map(u32::to_string).collect();
    file("cgroup.threads", tids.join(" "));
}

/// A limit as a Prometheus value: `+Inf` for none.
fn lim(v: Option<u64>) -> f64 {
    v.map_or(f64::INFINITY, |b| b as f64)
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn prometheus(t: &Target, s: &Snapshot, groups: &[&Group]) -> String {
    let mut out = String::new();
    let base = |g: &Group| {
        format!(
            "pid=\"{}\",comm=\"{}\",group=\"{}\"",
            t.pid,
            label(&t.comm),
            label(&g.path)
        )
    };
    let sums: Vec<Sums> = groups.iter().map(|g| sums(s, g)).collect();
    type Get<'a> = Box<dyn Fn(&Group, &Sums) -> Vec<(String, f64)> + 'a>;
    let one = |f: fn(&Group, &Sums) -> f64| -> Get<'_> {
        Box::new(move |g, m| vec![(String::new(), f(g, m))])
    };
    let metrics: Vec<(&str, &str, &str, Get<'_>)> = vec![
        (
            "memory_current_bytes",
            "gauge",
            "Bytes charged to the group and its descendants (memory.current).",
            one(|g, _| g.current as f64),
        ),
        (
            "memory_peak_bytes",
            "gauge",
            "Highest memory.current since creation or reset (memory.peak).",
            one(|g, _| g.peak as f64),
        ),
        (
            "memory_max_bytes",
            "gauge",
            "Hard limit (memory.max); +Inf for none.",
            one(|g, _| lim(g.max)),
        ),
        (
            "memory_high_bytes",
            "gauge",
            "Throttle limit (memory.high); +Inf for none.",
            one(|g, _| lim(g.high)),
        ),
        (
            "memory_low_bytes",
            "gauge",
            "Best-effort protection (memory.low).",
            one(|g, _| g.low as f64),
        ),
        (
            "memory_min_bytes",
            "gauge",
            "Hard protection (memory.min).",
            one(|g, _| g.min as f64),
        ),
        (
            "memory_soft_limit_bytes",
            "gauge",
            "Soft limit (memory.soft_limit_in_bytes); +Inf for none.",
            one(|g, _| lim(g.soft_limit)),
        ),
        (
            "memory_failcnt_total",
            "counter",
            "Charges refused at this group's max (memory.failcnt).",
            one(|g, _| g.failcnt as f64),
        ),
        (
            "memory_events_total",
            "counter",
            "memory.events of the group and its descendants.",
            Box::new(|g, _| {
                EVENT_NAMES
                    .iter()
                    .zip(g.events)
                    .map(|(k, v)| (format!(",event=\"{k}\""), v as f64))
                    .collect()
            }),
        ),
        (
            "memory_events_local_total",
            "counter",
            "memory.events.local: events of this group only.",
            Box::new(|g, _| {
                EVENT_NAMES
                    .iter()
                    .zip(g.events_local)
                    .map(|(k, v)| (format!(",event=\"{k}\""), v as f64))
                    .collect()
            }),
        ),
        (
            "memory_explicit_bytes",
            "gauge",
            "Bytes charged through cgm_charge (memory.stat explicit).",
            one(|_, m| m.explicit as f64),
        ),
        (
            "memory_charges_total",
            "counter",
            "Page runs charged (memory.stat nr_charges).",
            one(|_, m| m.stats[0] as f64),
        ),
        (
            "memory_uncharges_total",
            "counter",
            "Page runs uncharged (memory.stat nr_uncharges).",
            one(|_, m| m.stats[1] as f64),
        ),
        (
            "memory_reclaim_calls_total",
            "counter",
            "Reclaim callback calls (memory.stat reclaim_calls).",
            one(|_, m| m.stats[2] as f64),
        ),
        (
            "memory_reclaimed_bytes_total",
            "counter",
            "Bytes reclaim callbacks reported freed (memory.stat reclaimed).",
            one(|_, m| m.stats[3] as f64),
        ),
        (
            "memory_pressure_stall_seconds_total",
            "counter",
            "Time in which some, or all, of the group's threads were stalled charging \
             (memory.pressure total).",
            Box::new(|g, _| {
                g.pressure.map_or_else(Vec::new, |v| {
                    KINDS
                        .iter()
                        .zip(v.total_us)
                        .map(|(k, us)| (format!(",kind=\"{k}\""), us as f64 / 1e6))
                        .collect()
                })
            }),
        ),
        (
            "memory_pressure_percent",
            "gauge",
            "Share of wall time stalled over the last 10, 60 and 300 s (memory.pressure \
             avg10, avg60, avg300).",
            Box::new(|g, _| {
                let Some(v) = g.pressure else {
                    return Vec::new();
                };
                let mut out = Vec::new();
                for (k, kind) in KINDS.iter().enumerate() {
                    for (w, window) in ["10", "60", "300"].iter().enumerate() {
                        out.push((
                            format!(",kind=\"{kind}\",window=\"{window}\""),
                            Values::percent(v.avg[k][w]),
                        ));
                    }
                }
                out
            }),
        ),
        (
            "threads",
            "gauge",
            "Threads attached to the group.",
            one(|g, _| g.nr_threads as f64),
        ),
        (
            "descendants",
            "gauge",
            "Live descendant groups (cgroup.stat nr_descendants).",
            one(|_, m| m.descendants as f64),
        ),
        (
            "dying_descendants",
            "gauge",
            "Dying descendant groups (cgroup.stat nr_dying_descendants).",
            one(|_, m| m.dying as f64),
        ),
    ];
    for (name, kind, help, get) in &metrics {
        let _ = writeln!(out, "# HELP cgmalloc_{name} {help}");
        let _ = writeln!(out, "# TYPE cgmalloc_{name} {kind}");
        for (g, m) in groups.iter().zip(&sums) {
            for (extra, v) in get(g, m) {
                let v = if v.is_infinite() {
                    "+Inf".to_string()
                } else {
                    format!("{v}")
                };
                let _ = writeln!(out, "cgmalloc_{name}{{{}{extra}}} {v}", base(g));
            }
        }
    }
    out
}

/// `cgmalloc stat PID [GROUP] [--json | --prometheus]`.
pub fn stat(pid: &str, group: Option<&str>, format: Format) -> Result<(), Fail> {
    let t = Target::open(pid)?;
    let s = t.snapshot()?;
    let groups: Vec<&Group> = match group {
        None => s.groups.iter().collect(),
        Some(path) => {
            let path = if path.len() > 1 {
                path.trim_end_matches('/')
            } else {
                path
            };
            let g = s
                .groups
                .iter()
                .find(|g| g.path == path && g.state == "live")
                .ok_or_else(|| Fail::with_code(2, format!("process {}: no group {path}", t.pid)))?;
            vec![g]
        }
    };
    match format {
        Format::Text => {
            let mut out = String::new();
            for g in &groups {
                group_text(&mut out, &s, g);
            }
            print!("{out}");
        }
        Format::Json => {
            let v: Vec<Value> = groups.iter().map(|g| group_json(&t, &s, g)).collect();
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Format::Prometheus => print!("{}", prometheus(&t, &s, &groups)),
    }
    Ok(())
}

/// How long `set` waits for the process to apply the write.
const SET_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// `cgmalloc set PID GROUP FILE VALUE` (the value already checked): the process applies
/// it at its next charge-path step.
pub fn set(pid: &str, group: &str, file: &str, value: &str) -> Result<(), Fail> {
    let t = Target::open(pid)?;
    let s = t.snapshot()?;
    let path = if group.len() > 1 {
        group.trim_end_matches('/')
    } else {
        group
    };
    if !s.groups.iter().any(|g| g.path == path && g.state == "live") {
        return Err(Fail::with_code(
            2,
            format!("process {}: no group {path}", t.pid),
        ));
    }
    match t.request(path, file, value, SET_WAIT)? {
        Outcome::Applied(0) => Ok(()),
        Outcome::Applied(e) => Err(Fail::with_code(
            2,
            format!(
                "process {} refused {file} {value:?} for {path}: {}",
                t.pid,
                std::io::Error::from_raw_os_error(-e as i32)
            ),
        )),
        Outcome::Queued => {
            println!(
                "process {} has not allocated since: it applies {file} of {path} at its next allocation",
                t.pid
            );
            Ok(())
        }
    }
}
