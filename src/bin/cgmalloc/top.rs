//! `cgmalloc top [PID...] [-n N | --once] [-d SECONDS] [-s KEY]`: a live view of running
//! processes' groups, as `systemd-cgtop` shows cgroups. One row per group, indented as
//! a tree under its process: `memory.current` with a bar against `max` (or `high`),
//! `peak`, the change per second, and `memory.events` since the process started and
//! since the last refresh.
//!
//! On a terminal (no `-n`/`--once`) it redraws in the alternate screen: `q` (or Ctrl-C,
//! Esc) quits, `s` cycles the sort key, `t` returns to the tree. With `-n N` or `--once`
//! it prints N plain frames, a blank line between them, for scripts. Without PIDs it
//! watches every process `cgmalloc ps` lists, found again at each refresh; a process
//! that exits is shown once as exited and then dropped, and groups come and go with the
//! process's table.

use crate::memcg::psi::{Values, SOME};
use crate::target::{self, Group, Target};
use crate::Fail;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// What rows are ordered by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// Each process's groups as a tree, by path.
    Tree,
    Current,
    Peak,
    Rate,
    Events,
}

impl Sort {
    pub fn parse(s: &str) -> Option<Sort> {
        Some(match s {
            "tree" | "path" => Sort::Tree,
            "current" => Sort::Current,
            "peak" => Sort::Peak,
            "rate" => Sort::Rate,
            "events" => Sort::Events,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Sort::Tree => "tree",
            Sort::Current => "current",
            Sort::Peak => "peak",
            Sort::Rate => "rate",
            Sort::Events => "events",
        }
    }

    fn next(self) -> Sort {
        match self {
            Sort::Tree => Sort::Current,
            Sort::Current => Sort::Peak,
            Sort::Peak => Sort::Rate,
            Sort::Rate => Sort::Events,
            Sort::Events => Sort::Tree,
        }
    }
}

/// `cgmalloc top`'s options.
#[derive(Debug)]
pub struct Options {
    pub pids: Vec<String>,
    /// Frames to print plainly; `None`: the live view.
    pub frames: Option<u64>,
    pub interval: Duration,
    pub sort: Sort,
}

/// One row: a group of a process, with what it was at the last refresh.
struct Row {
    pid: i32,
    comm: String,
    group: Group,
    depth: usize,
    rate: f64,
    events: u64,
    new_events: u64,
}

/// What a refresh remembers of each group: `(current, events)` by `(pid, path)`.
type Seen = HashMap<(i32, String), (u64, u64)>;

/// Bytes as `ps` and `stat` show them, with `B` below a KiB.
fn human(v: u64) -> String {
    let h = crate::inspect::human_bytes(v);
    if v < 1024 {
        h + "B"
    } else {
        h
    }
}

fn signed_rate(r: f64) -> String {
    let sign = if r < 0.0 { "-" } else { "+" };
    format!("{sign}{}/s", human(r.abs() as u64))
}

/// `current` against `max` (else `high`) as a bar of `width` cells.
fn bar(g: &Group, width: usize) -> String {
    let Some(limit) = g.max.or(g.high).filter(|&l| l > 0) else {
        return format!("{:<width$}", " -");
    };
    let filled = ((g.current as f64 / limit as f64) * width as f64).round() as usize;
    let filled = filled.min(width);
    format!("{}{}", "#".repeat(filled), ".".repeat(width - filled))
}

/// The processes to show: those named, or every one `ps` would list. A named process
/// found gone for the first time is added to `gone` and to `exited`.
fn targets(pids: &[String], gone: &mut Vec<i32>, exited: &mut Vec<String>) -> Vec<Target> {
    if pids.is_empty() {
        return target::all();
    }
    let mut out = Vec::new();
    for p in pids {
        let pid: i32 = p.parse().unwrap_or(0);
        if gone.contains(&pid) {
            continue;
        }
        match Target::find(pid) {
            Ok(Some(t)) => out.push(t),
            _ => {
                gone.push(pid);
                exited.push(format!("{pid}: it has exited"));
            }
        }
    }
    out
}

/// Takes one refresh: the rows, and the lines about processes that exited meanwhile.
fn refresh(targets: &[Target], seen: &mut Seen, dt: f64, first: bool) -> (Vec<Row>, Vec<String>) {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut next: Seen = HashMap::new();
    for t in targets {
        let snap = match t.snapshot() {
            Ok(s) => s,
            Err(f) => {
                notes.push(format!("{} {}: {}", t.pid, t.comm, f.message));
                continue;
            }
        };
        for g in snap.groups {
            let events: u64 = g.events.iter().sum();
            let key = (t.pid, g.path.clone());
            let (rate, new_events) = match seen.get(&key) {
                Some(&(cur, ev)) if !first => (
                    (g.current as f64 - cur as f64) / dt.max(1e-3),
                    events.saturating_sub(ev),
                ),
                _ => (0.0, 0),
            };
            next.insert(key, (g.current, events));
            let depth = if g.path == "/" {
                0
            } else {
                g.path.matches('/').count()
            };
            rows.push(Row {
                pid: t.pid,
                comm: t.comm.clone(),
                group: g,
                depth,
                rate,
                events,
                new_events,
            });
        }
    }
    *seen = next;
    (rows, notes)
}

fn order(rows: &mut [Row], sort: Sort) {
    use std::cmp::Reverse;
    match sort {
        Sort::Tree => rows.sort_by(|a, b| (a.pid, &a.group.path).cmp(&(b.pid, &b.group.path))),
        Sort::Current => rows.sort_by_key(|r| Reverse(r.group.current)),
        Sort::Peak => rows.sort_by_key(|r| Reverse(r.group.peak)),
        Sort::Rate => rows.sort_by(|a, b| b.rate.total_cmp(&a.rate)),
        Sort::Events => rows.sort_by_key(|r| Reverse((r.new_events, r.events))),
    }
}

/// `some avg10` of `memory.pressure`, as a percentage; `-` if not exported.
fn psi10(g: &Group) -> String {
    g.pressure.map_or_else(
        || "-".to_string(),
        |v| format!("{:.1}%", Values::percent(v.avg[SOME][0])),
    )
}

/// One frame as text lines (no terminal control).
fn frame(rows: &[Row], notes: &[String], sort: Sort, interval: Duration) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!(
        "cgmalloc top: {} groups, every {:.1}s, sorted by {}",
        rows.len(),
        interval.as_secs_f64(),
        sort.name()
    ));
    out.push(format!(
        "{:>7} {:<15} {:<28} {:>8} {:<12} {:>8} {:>8} {:>8} {:>11} {:>7} {:>5} {:>6}",
        "PID",
        "COMMAND",
        "GROUP",
        "CURRENT",
        "OF MAX/HIGH",
        "PEAK",
        "MAX",
        "HIGH",
        "CHANGE",
        "EVENTS",
        "NEW",
        "PSI10"
    ));
    for r in rows {
        let g = &r.group;
        let name = if sort == Sort::Tree {
            let leaf = g
                .path
                .rsplit('/')
                .next()
                .filter(|s| !s.is_empty())
                .unwrap_or("/");
            format!(
                "{}{}",
                "  ".repeat(r.depth.saturating_sub(1)),
                if r.depth == 0 { "/" } else { leaf }
            )
        } else {
            g.path.clone()
        };
        let mut line = String::new();
        let _ = write!(
            line,
            "{:>7} {:<15} {:<28} {:>8} {:<12} {:>8} {:>8} {:>8} {:>11} {:>7} {:>5} {:>6}",
            r.pid,
            r.comm.chars().take(15).collect::<String>(),
            name,
            human(g.current),
            bar(g, 12),
            human(g.peak),
            g.max.map_or("max".to_string(), human),
            g.high.map_or("max".to_string(), human),
            signed_rate(r.rate),
            r.events,
            r.new_events,
            psi10(g)
        );
        if g.state == "dying" {
            line.push_str(" (dying)");
        }
        if g.enforce != "on" {
            line.push_str(&format!(" (enforce={})", g.enforce));
        }
        out.push(line);
    }
    for n in notes {
        out.push(format!("exited: {n}"));
    }
    out
}

/// `cgmalloc top`.
pub fn top(opts: Options) -> Result<(), Fail> {
    for p in &opts.pids {
        // A PID named on the command line must run cgmalloc now.
        Target::open(p)?;
    }
    match opts.frames {
        Some(n) => plain(&opts, n),
        None => live(&opts),
    }
}

fn plain(opts: &Options, n: u64) -> Result<(), Fail> {
    let mut seen = Seen::new();
    let mut gone = Vec::new();
    let mut last = Instant::now();
    let stdout = std::io::stdout();
    for i in 0..n {
        if i > 0 {
            std::thread::sleep(opts.interval);
        }
        let mut exited = Vec::new();
        let ts = targets(&opts.pids, &mut gone, &mut exited);
        let dt = last.elapsed().as_secs_f64();
        last = Instant::now();
        let (mut rows, notes) = refresh(&ts, &mut seen, dt, i == 0);
        let notes = [exited, notes].concat();
        order(&mut rows, opts.sort);
        let mut out = stdout.lock();
        if i > 0 {
            let _ = writeln!(out);
        }
        for l in frame(&rows, &notes, opts.sort, opts.interval) {
            let _ = writeln!(out, "{l}");
        }
        let _ = out.flush();
    }
    Ok(())
}

fn live(opts: &Options) -> Result<(), Fail> {
    use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
    use crossterm::{cursor, execute, queue, terminal};
    let fail = |e: std::io::Error| Fail::with_code(2, format!("top: the terminal: {e}"));
    let mut out = std::io::stdout();
    terminal::enable_raw_mode().map_err(fail)?;
    if let Err(e) = execute!(out, terminal::EnterAlternateScreen, cursor::Hide) {
        let _ = terminal::disable_raw_mode();
        return Err(fail(e));
    }
    let mut seen = Seen::new();
    let mut gone = Vec::new();
    let mut sort = opts.sort;
    let mut last = Instant::now();
    let mut first = true;
    let result: Result<(), Fail> = loop {
        let mut exited = Vec::new();
        let ts = targets(&opts.pids, &mut gone, &mut exited);
        let dt = last.elapsed().as_secs_f64();
        last = Instant::now();
        let (mut rows, notes) = refresh(&ts, &mut seen, dt, first);
        let notes = [exited, notes].concat();
        first = false;
        order(&mut rows, sort);
        // A terminal that does not know its size (0 × 0) gets a common one.
        let (cols, lines) = match terminal::size() {
            Ok((c, l)) if c > 0 && l > 0 => (c, l),
            _ => (120, 40),
        };
        let mut text = frame(&rows, &notes, sort, opts.interval);
        text.push(String::new());
        text.push("q quit   s sort   t tree".to_string());
        let _ = queue!(
            out,
            cursor::MoveTo(0, 0),
            terminal::Clear(terminal::ClearType::All)
        );
        for (i, l) in text.iter().take(lines as usize).enumerate() {
            let l: String = l.chars().take(cols as usize).collect();
            let _ = queue!(out, cursor::MoveTo(0, i as u16));
            let _ = write!(out, "{l}");
        }
        let _ = out.flush();
        // Keys until the next refresh.
        let deadline = Instant::now() + opts.interval;
        let mut quit = false;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match event::poll(left) {
                Ok(true) => {}
                Ok(false) => break,
                // The terminal is gone: nothing more to show.
                Err(_) => {
                    quit = true;
                    break;
                }
            }
            if let Ok(Event::Key(k)) = event::read() {
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => quit = true,
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                        quit = true
                    }
                    KeyCode::Char('s') => sort = sort.next(),
                    KeyCode::Char('t') => sort = Sort::Tree,
                    _ => continue,
                }
                break;
            }
        }
        if quit {
            break Ok(());
        }
    };
    let _ = execute!(out, cursor::Show, terminal::LeaveAlternateScreen);
    let _ = terminal::disable_raw_mode();
    result
}
