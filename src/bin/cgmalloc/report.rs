//! `cgmalloc run --stats`: one report for the whole run, however many processes COMMAND
//! starts (a version-manager shim forks a dozen before the program the user meant; a build
//! hundreds).
//!
//! The channel is a directory the launcher makes (mode 0700, in `$TMPDIR` or `/tmp`) and
//! names to every process of the run in `CGMALLOC_REPORT`; each process leaves its record
//! there when it calls `exit` (`src/config/stats.rs`; a JSON object per process). A path
//! and not a descriptor, so a program that closes every descriptor it inherited still
//! reports. When COMMAND has exited, the launcher reads the records, prints the report and
//! removes the directory (also when it fails to start COMMAND).
//!
//! The report: one line per process (pid, command, root peak, exit, events), COMMAND's
//! own process first, the processes under 1 MiB that hit nothing folded into one line; then
//! the full group table of COMMAND's process (the last program it exec'd, in COMMAND's own
//! pid) and of every process that hit a limit (a `max` or `oom` event). With `json` the
//! same as one JSON object, every process's groups included.

use crate::inspect::human_bytes;
use crate::memcg::events::EVENT_NAMES;
use crate::Fail;
use serde_json::{json, Map, Value};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Exit status when the report cannot be prepared.
const EXIT_FAIL: u8 = 2;

/// A process whose root peaked under this and that hit nothing is folded.
const FOLD_BELOW: u64 = 1 << 20;

/// Where the report goes and in which form (`--stats`, `--stats=json`, `--stats=FILE`;
/// a FILE ending in `.json` gets JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stats {
    pub file: Option<PathBuf>,
    pub json: bool,
}

/// The directory the processes of the run leave their records in; removed on drop.
pub struct Inbox {
    dir: PathBuf,
}

impl Inbox {
    pub fn create() -> Result<Inbox, Fail> {
        let base = std::env::var_os("TMPDIR")
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "/tmp".into());
        let mut template = Path::new(&base)
            .join("cgmalloc-run.XXXXXX")
            .into_os_string()
            .into_vec();
        template.push(0);
        // SAFETY: `template` is a writable, NUL-terminated buffer that mkdtemp fills in.
        let made = unsafe { libc::mkdtemp(template.as_mut_ptr().cast()) };
        if made.is_null() {
            let e = std::io::Error::last_os_error();
            return Err(Fail::with_code(
                EXIT_FAIL,
                format!(
                    "--stats: cannot make a directory in {}: {e}",
                    Path::new(&base).display()
                ),
            ));
        }
        template.pop();
        Ok(Inbox {
            dir: PathBuf::from(OsString::from_vec(template)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The records found, unreadable or malformed ones left out.
    fn records(&self) -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.file_name().as_bytes().ends_with(b".json"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// How COMMAND's process ended, as the launcher's wait saw it.
#[derive(Clone, Copy, Debug)]
pub enum End {
    Code(i32),
    Signal(i32),
}

impl End {
    fn text(self) -> String {
        match self {
            End::Code(c) => c.to_string(),
            End::Signal(s) => format!("signal {s}"),
        }
    }

    fn json(self) -> Value {
        match self {
            End::Code(c) => json!({ "code": c }),
            End::Signal(s) => json!({ "signal": s }),
        }
    }
}

/// One process of the run, from its record.
struct Proc {
    record: Value,
    pid: u64,
    comm: String,
    exit: Option<i64>,
    root_peak: u64,
    /// The root's hierarchical events: every group's.
    events: Vec<(String, u64)>,
    main: bool,
}

impl Proc {
    fn new(record: Value, main_pid: u32) -> Proc {
        let pid = record["pid"].as_u64().unwrap_or(0);
        let groups = record["groups"].as_array().cloned().unwrap_or_default();
        let root = groups.iter().find(|g| g["path"] == "/");
        let events = EVENT_NAMES
            .iter()
            .map(|k| {
                let v = root.map_or(0, |r| r["events"][k].as_u64().unwrap_or(0));
                (k.to_string(), v)
            })
            .collect();
        Proc {
            pid,
            comm: record["comm"].as_str().unwrap_or("?").to_string(),
            exit: record["exit"].as_i64(),
            root_peak: root.and_then(|r| r["peak"].as_u64()).unwrap_or(0),
            events,
            main: pid == main_pid as u64,
            record,
        }
    }

    fn event(&self, name: &str) -> u64 {
        self.events
            .iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| *v)
    }

    /// A `max` or `oom` event in any group.
    fn hit_limit(&self) -> bool {
        self.event("max") > 0 || self.event("oom") > 0
    }

    fn folded(&self) -> bool {
        !self.main && self.root_peak < FOLD_BELOW && self.events.iter().all(|(_, v)| *v == 0)
    }

    fn events_text(&self) -> String {
        let set: Vec<String> = self
            .events
            .iter()
            .filter(|(_, v)| *v > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if set.is_empty() {
            "-".to_string()
        } else {
            set.join(" ")
        }
    }
}

/// Reads the records in `inbox` and writes the report of the run of `command`, whose
/// process `main_pid` ended as `end`.
pub fn write(
    stats: &Stats,
    inbox: &Inbox,
    command: &[OsString],
    main_pid: u32,
    end: End,
) -> Result<(), Fail> {
    let mut procs: Vec<Proc> = inbox
        .records()
        .into_iter()
        .map(|r| Proc::new(r, main_pid))
        .collect();
    procs.sort_by_key(|p| (!p.main, p.pid));
    let text = if stats.json {
        let mut s = serde_json::to_string_pretty(&as_json(&procs, command, main_pid, end))
            .unwrap_or_default();
        s.push('\n');
        s
    } else {
        as_text(&procs, command, main_pid, end)
    };
    match &stats.file {
        None => {
            eprint!("{text}");
            Ok(())
        }
        Some(path) => std::fs::write(path, text).map_err(|e| {
            Fail::with_code(
                EXIT_FAIL,
                format!("--stats: cannot write {}: {e}", path.display()),
            )
        }),
    }
}

fn command_text(command: &[OsString]) -> String {
    command
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

fn as_json(procs: &[Proc], command: &[OsString], main_pid: u32, end: End) -> Value {
    let list: Vec<Value> = procs
        .iter()
        .map(|p| {
            let events: Map<String, Value> = p
                .events
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({
                "pid": p.pid,
                "ppid": p.record["ppid"],
                "comm": p.comm,
                "exit": if p.main { end.json() } else { json!({ "code": p.exit }) },
                "root_peak": p.root_peak,
                "events": events,
                "main": p.main,
                "hit_limit": p.hit_limit(),
                "folded": p.folded(),
                "groups": p.record["groups"],
            })
        })
        .collect();
    let base = procs
        .iter()
        .find(|p| p.main)
        .or(procs.first())
        .map_or(Value::Null, |p| p.record["percent_base"].clone());
    json!({
        "command": command.iter().map(|a| a.to_string_lossy()).collect::<Vec<_>>(),
        "pid": main_pid,
        "exit": end.json(),
        "percent_base": base,
        "processes": list,
    })
}

fn as_text(procs: &[Proc], command: &[OsString], main_pid: u32, end: End) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "cgmalloc: report of `{}`: {} process{} reported; pid {main_pid} exited with {}",
        command_text(command),
        procs.len(),
        if procs.len() == 1 { "" } else { "es" },
        end.text()
    );
    let _ = writeln!(
        out,
        "{:>8}  {:<16} {:>10} {:>9}  EVENTS",
        "PID", "COMMAND", "ROOT PEAK", "EXIT"
    );
    if !procs.iter().any(|p| p.main) {
        let _ = writeln!(
            out,
            "{main_pid:>8}  {:<16} {:>10} {:>9}  (no record: it ended without exit)",
            "-",
            "-",
            end.text()
        );
    }
    let mut folded: Vec<&str> = Vec::new();
    for p in procs {
        if p.folded() {
            folded.push(&p.comm);
            continue;
        }
        let exit = if p.main {
            end.text()
        } else {
            p.exit.map_or("-".to_string(), |c| c.to_string())
        };
        let _ = writeln!(
            out,
            "{:>8}  {:<16} {:>10} {:>9}  {}{}",
            p.pid,
            p.comm,
            human_bytes(p.root_peak),
            exit,
            p.events_text(),
            if p.main { "  (COMMAND)" } else { "" }
        );
    }
    if !folded.is_empty() {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for c in &folded {
            match counts.iter_mut().find(|(n, _)| n == c) {
                Some((_, k)) => *k += 1,
                None => counts.push((c, 1)),
            }
        }
        let names: Vec<String> = counts
            .iter()
            .map(|(n, k)| {
                if *k == 1 {
                    n.to_string()
                } else {
                    format!("{n} ×{k}")
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "{:>8}  and {} more, each under 1 MiB with no events: {}",
            "",
            folded.len(),
            names.join(", ")
        );
    }
    if let Some(base) = procs
        .iter()
        .find(|p| p.main)
        .or(procs.first())
        .and_then(|p| p.record["percent_base"].as_object())
    {
        let _ = writeln!(
            out,
            "{:>8}  N% is a share of {} ({})",
            "",
            base["kind"].as_str().unwrap_or("?"),
            human_bytes(base["bytes"].as_u64().unwrap_or(0))
        );
    }
    for p in procs.iter().filter(|p| p.main || p.hit_limit()) {
        let _ = writeln!(
            out,
            "\ncgmalloc: pid {} ({}){}: groups at exit",
            p.pid,
            p.comm,
            if p.main { ", COMMAND" } else { ", hit a limit" }
        );
        table(&mut out, &p.record);
    }
    out
}

fn limit(v: &Value) -> String {
    v.as_u64().map_or("max".to_string(), human_bytes)
}

/// The group table of one record, as the library prints it at exit.
fn table(out: &mut String, record: &Value) {
    let _ = writeln!(
        out,
        "{:<24} {:<10} {:<10} {:<10} {:<10} events",
        "group", "current", "peak", "max", "high"
    );
    for g in record["groups"].as_array().into_iter().flatten() {
        let mut path = g["path"].as_str().unwrap_or("?").to_string();
        if g["state"] == "dying" {
            path.push_str(" (dying)");
        }
        let mut line = format!(
            "{path:<24} {:<10} {:<10} {:<10} {:<10}",
            human_bytes(g["current"].as_u64().unwrap_or(0)),
            human_bytes(g["peak"].as_u64().unwrap_or(0)),
            limit(&g["max"]),
            limit(&g["high"]),
        );
        for k in EVENT_NAMES {
            let _ = write!(line, " {k}={}", g["events"][k].as_u64().unwrap_or(0));
        }
        if let Some(mode) = g["enforce"].as_str().filter(|m| *m != "on") {
            let _ = write!(line, " enforce={mode}");
        }
        let p = &g["pressure"];
        if p["some"]["total"].as_u64().unwrap_or(0) > 0 {
            line.push_str(" pressure:");
            for kind in ["some", "full"] {
                let k = &p[kind];
                let _ = write!(
                    line,
                    " {kind} avg10={:.2} avg60={:.2} avg300={:.2} total={}",
                    k["avg10"].as_f64().unwrap_or(0.0),
                    k["avg60"].as_f64().unwrap_or(0.0),
                    k["avg300"].as_f64().unwrap_or(0.0),
                    k["total"].as_u64().unwrap_or(0)
                );
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
