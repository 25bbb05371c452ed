//! The command line: `cgmalloc run [OPTIONS] [--] COMMAND [ARGS...]`, `--help`,
//! `--version`. Every option value is checked here (with `syntax.rs`), so a mistake is
//! reported before anything starts, and `run`'s options are turned into the `CGMALLOC_*`
//! variables COMMAND will see.

use crate::syntax;
use crate::Fail;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    Help,
    Version,
    /// No arguments at all: the short usage on stderr, exit 2.
    Usage,
    Run(Run),
    /// `cgmalloc ps`.
    Ps,
    /// `cgmalloc stat PID [GROUP] [--json | --prometheus]`.
    Stat {
        pid: String,
        group: Option<String>,
        format: crate::inspect::Format,
    },
    /// `cgmalloc top [PID...] [-n N | --once] [-d SECONDS] [-s KEY]`.
    Top(crate::top::Options),
    /// `cgmalloc set PID GROUP FILE VALUE`, the value checked.
    Set {
        pid: String,
        group: String,
        file: String,
        value: String,
    },
}

/// The files `cgmalloc set` writes.
pub const SETTABLE: [&str; 7] = [
    "memory.max",
    "memory.high",
    "memory.low",
    "memory.min",
    "memory.soft_limit_in_bytes",
    "memory.oom.policy",
    "memory.enforce",
];

/// `cgmalloc run`, validated.
#[derive(Debug)]
pub struct Run {
    /// The variables to set for COMMAND (each overrides an inherited one of that name).
    pub env: Vec<(&'static str, OsString)>,
    /// `--lib`, made absolute.
    pub lib: Option<PathBuf>,
    /// `--stats[=FILE|=json]`: one report for the run (a FILE made absolute).
    pub stats: Option<crate::report::Stats>,
    /// COMMAND and its arguments; never empty.
    pub command: Vec<OsString>,
}

pub fn parse(argv: &[OsString]) -> Result<Invocation, Fail> {
    let Some(first) = argv.first() else {
        return Ok(Invocation::Usage);
    };
    match first.as_bytes() {
        b"--help" | b"-h" | b"help" => Ok(Invocation::Help),
        b"--version" | b"-V" => Ok(Invocation::Version),
        b"run" => parse_run(&argv[1..]),
        b"ps" => match argv.get(1) {
            None => Ok(Invocation::Ps),
            Some(a) => Err(Fail::usage(format!(
                "ps: unexpected argument {}",
                a.to_string_lossy()
            ))),
        },
        b"stat" => parse_stat(&argv[1..]),
        b"set" => parse_set(&argv[1..]),
        b"top" => parse_top(&argv[1..]),
        a if a.starts_with(b"-") => Err(Fail::usage(format!(
            "unknown option {}",
            first.to_string_lossy()
        ))),
        _ => Err(Fail::usage(format!(
            "unknown subcommand {:?} (the subcommands are `run`, `ps`, `stat`, `top` and `set`)",
            first.to_string_lossy()
        ))),
    }
}

fn parse_top(argv: &[OsString]) -> Result<Invocation, Fail> {
    use crate::top::{Options, Sort};
    let mut opts = Options {
        pids: Vec::new(),
        frames: None,
        interval: std::time::Duration::from_secs(1),
        sort: Sort::Tree,
    };
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        i += 1;
        let mut value = |what: &str| {
            let v = words.get(i).cloned();
            i += 1;
            v.ok_or_else(|| Fail::usage(format!("top: {w} needs {what}")))
        };
        match w {
            "--once" => opts.frames = Some(1),
            "-n" => {
                let v = value("a number of refreshes")?;
                let n: u64 =
                    v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        Fail::usage(format!("top: -n {v:?}: want a number above 0"))
                    })?;
                opts.frames = Some(n);
            }
            "-d" => {
                let v = value("SECONDS")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| (0.05..=3600.0).contains(s))
                    .ok_or_else(|| {
                        Fail::usage(format!("top: -d {v:?}: want seconds from 0.05 to 3600"))
                    })?;
                opts.interval = std::time::Duration::from_secs_f64(secs);
            }
            "-s" => {
                let v = value("a sort key")?;
                opts.sort = Sort::parse(&v).ok_or_else(|| {
                    Fail::usage(format!(
                        "top: -s {v:?}: want tree, current, peak, rate or events"
                    ))
                })?;
            }
            o if o.starts_with('-') => return Err(Fail::usage(format!("top: unknown option {o}"))),
            p => {
                if !p.parse::<i32>().is_ok_and(|n| n > 0) {
                    return Err(Fail::usage(format!("top: {p:?} is not a process id")));
                }
                opts.pids.push(p.to_string());
            }
        }
    }
    Ok(Invocation::Top(opts))
}

fn parse_set(argv: &[OsString]) -> Result<Invocation, Fail> {
    let words: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let [pid, group, file, value] = words.as_slice() else {
        return Err(Fail::usage(
            "set: want PID GROUP FILE VALUE, e.g. cgmalloc set 4242 /workers memory.max 1G",
        ));
    };
    syntax::group_path(group, true).map_err(|e| Fail::usage(format!("set: {e}")))?;
    let value = match file.as_str() {
        "memory.oom.policy" => syntax::oom_policy(value),
        "memory.enforce" => syntax::enforce(value),
        f if SETTABLE.contains(&f) => syntax::size(value),
        f => {
            return Err(Fail::usage(format!(
                "set: {f:?} is not a file set can write (want one of {})",
                SETTABLE.join(", ")
            )))
        }
    }
    .map_err(|e| Fail::usage(format!("set: {file}: {e}")))?;
    Ok(Invocation::Set {
        pid: pid.clone(),
        group: group.clone(),
        file: file.clone(),
        value,
    })
}

fn parse_stat(argv: &[OsString]) -> Result<Invocation, Fail> {
    use crate::inspect::Format;
    let mut format = Format::Text;
    let mut words = Vec::new();
    for a in argv {
        match a.to_string_lossy().as_ref() {
            "--json" if format == Format::Text => format = Format::Json,
            "--prometheus" if format == Format::Text => format = Format::Prometheus,
            "--json" | "--prometheus" => {
                return Err(Fail::usage(
                    "stat: --json and --prometheus exclude each other",
                ))
            }
            o if o.starts_with('-') && o.len() > 1 => {
                return Err(Fail::usage(format!("stat: unknown option {o}")))
            }
            w => words.push(w.to_string()),
        }
    }
    let mut words = words.into_iter();
    let Some(pid) = words.next() else {
        return Err(Fail::usage(
            "stat: a PID is needed: cgmalloc stat PID [GROUP]",
        ));
    };
    let group = words.next();
    if let Some(g) = &group {
        syntax::group_path(g, true).map_err(|e| Fail::usage(format!("stat: {e}")))?;
    }
    if let Some(extra) = words.next() {
        return Err(Fail::usage(format!("stat: unexpected argument {extra}")));
    }
    Ok(Invocation::Stat { pid, group, format })
}

/// `--name=value` → (`--name`, Some(`value`)); `--name` → (`--name`, None).
fn split_option(arg: &OsStr) -> (&[u8], Option<&OsStr>) {
    let bytes = arg.as_bytes();
    match bytes.iter().position(|&c| c == b'=') {
        Some(i) if bytes.starts_with(b"--") => {
            (&bytes[..i], Some(OsStr::from_bytes(&bytes[i + 1..])))
        }
        _ => (bytes, None),
    }
}

/// The options of `run`, in the order of the command line (the last of a repeated
/// single-valued option wins; `--group` and `--thread` accumulate).
#[derive(Default)]
struct Options {
    limits: Vec<(&'static str, String)>,
    groups: Vec<String>,
    threads: Vec<String>,
    oom: Option<String>,
    attach: Option<String>,
    stats: Option<crate::report::Stats>,
    no_cgroup: bool,
    lib: Option<PathBuf>,
}

fn parse_run(argv: &[OsString]) -> Result<Invocation, Fail> {
    let mut opts = Options::default();
    let mut i = 0;
    let command: &[OsString] = loop {
        let Some(arg) = argv.get(i) else {
            break &[];
        };
        i += 1;
        if arg == "--" {
            break &argv[i..];
        }
        if !arg.as_bytes().starts_with(b"-") {
            // Lenient: the first argument that is not an option starts COMMAND.
            break &argv[i - 1..];
        }
        let (name, inline) = split_option(arg);
        let name = String::from_utf8_lossy(name).into_owned();
        let mut value = |what: &str| -> Result<String, Fail> {
            let v = take_value(argv, &mut i, inline, &name, what)?;
            v.into_string()
                .map_err(|_| Fail::usage(format!("{name}: the value is not valid UTF-8")))
        };
        let bad = |name: &str, why: String| Fail::usage(format!("{name}: {why}"));
        match name.as_str() {
            "--max" | "--high" | "--low" | "--min" => {
                let v = syntax::size(&value("SIZE, e.g. 256M")?).map_err(|e| bad(&name, e))?;
                let var = match name.as_str() {
                    "--max" => "CGMALLOC_MAX",
                    "--high" => "CGMALLOC_HIGH",
                    "--low" => "CGMALLOC_LOW",
                    _ => "CGMALLOC_MIN",
                };
                opts.limits.retain(|(k, _)| *k != var);
                opts.limits.push((var, v));
            }
            "--group" => {
                let v = value("PATH:KEY=VALUE,..., e.g. /workers:max=256M")?;
                opts.groups
                    .push(syntax::group_spec(&v).map_err(|e| bad(&name, e))?);
            }
            "--thread" => {
                let v = value("GLOB=PATH, e.g. 'worker-*=/workers'")?;
                opts.threads
                    .push(syntax::thread_spec(&v).map_err(|e| bad(&name, e))?);
            }
            "--attach" => {
                let v = value("PATH, e.g. /job")?;
                opts.attach = Some(syntax::group_path(v.trim(), true).map_err(|e| bad(&name, e))?);
            }
            "--enforce" => {
                let v = value("on, warn or off")?;
                let mode = syntax::enforce(&v).map_err(|e| bad(&name, e))?;
                // The root's `memory.enforce`, as the first entry of CGMALLOC_GROUPS.
                opts.groups.retain(|g| !g.starts_with("/:enforce="));
                opts.groups.insert(0, format!("/:enforce={mode}"));
            }
            "--oom" => {
                let v = value("fail, abort or force")?;
                opts.oom = Some(syntax::oom_policy(&v).map_err(|e| bad(&name, e))?);
            }
            "--stats" => {
                use crate::report::Stats;
                opts.stats = Some(match inline {
                    None => Stats {
                        file: None,
                        json: false,
                    },
                    Some(v) if v == "json" => Stats {
                        file: None,
                        json: true,
                    },
                    Some(file) if file.is_empty() => {
                        return Err(Fail::usage("--stats=FILE needs a file name"));
                    }
                    Some(file) => Stats {
                        json: file.as_bytes().ends_with(b".json"),
                        file: Some(absolute(file, "--stats")?),
                    },
                });
            }
            "--lib" => {
                let v = take_value(argv, &mut i, inline, &name, "PATH")?;
                if v.is_empty() {
                    return Err(Fail::usage("--lib needs a value (PATH)"));
                }
                opts.lib = Some(absolute(&v, "--lib")?);
            }
            "--no-cgroup" | "--help" | "-h" | "--version" | "-V" if inline.is_some() => {
                return Err(Fail::usage(format!("{name} takes no value")));
            }
            "--no-cgroup" => opts.no_cgroup = true,
            "--help" | "-h" => return Ok(Invocation::Help),
            "--version" | "-V" => return Ok(Invocation::Version),
            _ => return Err(Fail::usage(format!("unknown option {name}"))),
        }
    };
    if command.is_empty() {
        return Err(Fail::usage(
            "no COMMAND given (cgmalloc run [OPTIONS] -- COMMAND [ARGS...])",
        ));
    }
    if let Some(path) = &opts.attach {
        check_created("--attach", path, &opts.groups)?;
    }
    for rule in &opts.threads {
        let path = rule.rsplit_once('=').map_or("/", |(_, p)| p);
        check_created("--thread", path, &opts.groups)?;
    }
    Ok(Invocation::Run(Run {
        env: environment(&opts),
        lib: opts.lib,
        stats: opts.stats,
        command: command.to_vec(),
    }))
}

/// `--attach PATH` and `--thread GLOB=PATH` must name a group that exists when the
/// library starts: `/`, or one a `--group` creates (with its ancestors). The library
/// would only warn and leave the threads in the root.
fn check_created(option: &str, path: &str, groups: &[String]) -> Result<(), Fail> {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let created = |spec: &String| {
        let g = spec.split(':').next().unwrap_or_default();
        g == path || g.starts_with(&format!("{path}/"))
    };
    if path == "/" || groups.iter().any(created) {
        return Ok(());
    }
    Err(Fail::usage(format!(
        "{option}: no --group creates {path} (add --group {path}, or name a group that \
         is created)"
    )))
}

/// An option's value: after `=` when given so, else the next argument (`argv[*i]`,
/// consumed) unless that is missing or looks like an option (`--...`).
fn take_value(
    argv: &[OsString],
    i: &mut usize,
    inline: Option<&OsStr>,
    name: &str,
    what: &str,
) -> Result<OsString, Fail> {
    if let Some(v) = inline {
        return Ok(v.to_os_string());
    }
    match argv.get(*i) {
        Some(next) if !next.as_bytes().starts_with(b"--") => {
            *i += 1;
            Ok(next.clone())
        }
        _ => Err(Fail::usage(format!("{name} needs a value ({what})"))),
    }
}

/// The `CGMALLOC_*` variables the options stand for.
fn environment(opts: &Options) -> Vec<(&'static str, OsString)> {
    let mut env: Vec<(&'static str, OsString)> = opts
        .limits
        .iter()
        .map(|(k, v)| (*k, OsString::from(v)))
        .collect();
    if !opts.groups.is_empty() {
        env.push(("CGMALLOC_GROUPS", opts.groups.join(";").into()));
    }
    if !opts.threads.is_empty() {
        env.push(("CGMALLOC_THREADS", opts.threads.join(";").into()));
    }
    if let Some(oom) = &opts.oom {
        env.push(("CGMALLOC_OOM", oom.into()));
    }
    if let Some(path) = &opts.attach {
        env.push(("CGMALLOC_ATTACH", path.into()));
    }
    if opts.no_cgroup {
        env.push(("CGMALLOC_CGROUP", "off".into()));
    }
    env
}

/// `path` made absolute against the current directory (not resolving symbolic links).
fn absolute(path: &OsStr, option: &str) -> Result<PathBuf, Fail> {
    std::path::absolute(Path::new(path)).map_err(|e| {
        Fail::usage(format!(
            "{option}: cannot make {} absolute: {e}",
            Path::new(path).display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Run, Fail> {
        let argv: Vec<OsString> = std::iter::once("run")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        match parse(&argv)? {
            Invocation::Run(r) => Ok(r),
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn var(r: &Run, name: &str) -> Option<String> {
        r.env
            .iter()
            .rfind(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string_lossy().into_owned())
    }

    #[test]
    fn both_forms_and_repeats() {
        let r = run(&[
            "--max=1G",
            "--max",
            "256M",
            "--high= 200M ",
            "--group",
            "/a:max=1M",
            "--group=/b:oom=abort",
            "--thread",
            "w*=/a",
            "--thread=x=/",
            "--stats",
            "--no-cgroup",
            "echo",
            "--max",
        ])
        .unwrap();
        assert_eq!(var(&r, "CGMALLOC_MAX").unwrap(), "256M");
        assert_eq!(
            r.env.iter().filter(|(k, _)| *k == "CGMALLOC_MAX").count(),
            1
        );
        assert_eq!(var(&r, "CGMALLOC_HIGH").unwrap(), "200M");
        assert_eq!(
            var(&r, "CGMALLOC_GROUPS").unwrap(),
            "/a:max=1M;/b:oom=abort"
        );
        assert_eq!(var(&r, "CGMALLOC_THREADS").unwrap(), "w*=/a;x=/");
        assert_eq!(
            var(&r, "CGMALLOC_STATS"),
            None,
            "the launcher makes the report"
        );
        assert_eq!(
            r.stats,
            Some(crate::report::Stats {
                file: None,
                json: false
            })
        );
        assert_eq!(var(&r, "CGMALLOC_CGROUP").unwrap(), "off");
        assert_eq!(var(&r, "CGMALLOC_OOM"), None);
        assert_eq!(r.command, ["echo", "--max"]);
    }

    #[test]
    fn errors() {
        for bad in [
            &["--bogus", "--", "x"][..],
            &["--max", "--", "x"],
            &["--max"],
            &["--max", "1M"],
            &["--oom=retry", "x"],
            &["--no-cgroup=1", "x"],
            &["--stats=", "x"],
            &["--lib=", "x"],
            &["--"],
            &["--attach", "/nope", "x"],
            &["--group", "/a/b", "--attach", "/a/bc", "x"],
            &["--group", "/ab", "--attach", "/a", "x"],
            &["--thread", "w*=/w", "x"],
        ] {
            assert!(run(bad).is_err(), "{bad:?}");
        }
        for ok in [
            &["--attach", "/", "x"][..],
            &["--group", "/a/b:max=1M", "--attach", "/a/b", "x"],
            &["--attach", "/a", "--group=/a/b", "x"],
        ] {
            assert!(run(ok).is_ok(), "{ok:?}");
        }
        assert!(parse(&["frob".into()]).is_err());
        assert!(matches!(parse(&[]), Ok(Invocation::Usage)));
    }
}
