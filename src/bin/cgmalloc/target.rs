//! Reading a running process's groups from outside (`ps`, `stat`): find the exported
//! record `cgmalloc_layout` in an ELF file the process mapped (`libcgmalloc.so`, or the
//! executable when cgmalloc is linked in), check its magic and layout version, then read
//! the group table it points to with `process_vm_readv`. Nothing runs in the process for
//! it (`src/memcg/layout.rs` describes the record; DESIGN.md, "Watching a running
//! process").
//!
//! Reading another process's memory needs the same permission as `/proc/PID/mem`: the
//! same user (and, under `kernel.yama.ptrace_scope` 1, an ancestor), or root. The values
//! are read field by field while the process runs, as a reader of cgroupfs reads one
//! file after another: each is a value the process held, not one instant of all.

use crate::Fail;
use object::{Object, ObjectKind, ObjectSymbol};
use std::collections::HashMap;
use std::path::PathBuf;

/// Exit status when a process cannot be inspected.
const EXIT_FAIL: u8 = 2;

const SYMBOL: &str = "cgmalloc_layout";
const MAGIC: &[u8; 8] = b"cgmalloc";
/// The layout version this reader knows; it also reads version 1, which has no
/// `memory.pressure`.
pub const VERSION: u64 = 2;

pub use crate::memcg::events::{EVENT_NAMES, NR_EVENTS, NR_STATS, STAT_NAMES};
use crate::memcg::psi::{self, Psi};
use crate::memcg::wire::{self, ENFORCE_NAMES};

const POLICY_NAMES: [&str; 4] = ["inherit", "fail", "abort", "force"];

/// The record behind `cgmalloc_layout`, version 2: `u64`s in `src/memcg/layout.rs`'s order.
#[derive(Clone, Copy, Debug, Default)]
struct Layout {
    table: u64,
    root_oom_policy: u64,
    max_groups: u64,
    page_size: u64,
    name_max: u64,
    nr_events: u64,
    nr_stats: u64,
    unlimited: u64,
    bound: u64,
    slots: u64,
    slot_size: u64,
    names: u64,
    name_len: u64,
    life: u64,
    #[allow(dead_code)] // in the record; a reader has no use for it yet
    serial: u64,
    parent: u64,
    nr_threads: u64,
    oom_policy: u64,
    explicit: u64,
    events: u64,
    events_local: u64,
    stats: u64,
    usage: u64,
    watermark: u64,
    failcnt: u64,
    max: u64,
    high: u64,
    soft_limit: u64,
    low: u64,
    min: u64,
    request: u64,
    threads: u64,
    max_threads: u64,
    threads_used: u64,
    thread_size: u64,
    thread_tid: u64,
    thread_group: u64,
    thread_stock: u64,
    enforce: u64,
    /// 0 in version 1.
    psi: u64,
    psi_words: u64,
}

/// Words of the record after magic, version and size, by version.
const LAYOUT_WORDS: [usize; 2] = [39, 41];

/// A process that runs cgmalloc: where its record lies.
pub struct Target {
    pub pid: i32,
    /// `/proc/PID/comm`.
    pub comm: String,
    layout_addr: u64,
}

/// One group as read from a process.
#[derive(Clone, Debug)]
pub struct Group {
    pub id: u32,
    pub path: String,
    pub parent: u32,
    /// `live` or `dying`.
    pub state: &'static str,
    pub current: u64,
    pub peak: u64,
    /// `None`: `max` (no limit).
    pub max: Option<u64>,
    pub high: Option<u64>,
    pub soft_limit: Option<u64>,
    pub low: u64,
    pub min: u64,
    pub failcnt: u64,
    pub events: [u64; NR_EVENTS],
    pub events_local: [u64; NR_EVENTS],
    /// This slot's own statistics and explicit bytes (a subtree's are summed on output).
    pub stats: [u64; NR_STATS],
    pub explicit: u64,
    /// The effective `memory.oom.policy`.
    pub oom_policy: &'static str,
    /// `memory.enforce`.
    pub enforce: &'static str,
    pub nr_threads: u64,
    /// The ids of the threads attached (`cgroup.threads`).
    pub tids: Vec<u32>,
    /// Bytes in the stocks of threads that cache this group (a subtree's are summed).
    pub stock: u64,
    /// `memory.pressure` now; `None` from a process of layout version 1.
    pub pressure: Option<psi::Values>,
}

/// Every group of a process, sorted by path (the root first).
pub struct Snapshot {
    pub groups: Vec<Group>,
    /// Each group's parent, by id (the root's is itself).
    parents: HashMap<u32, u32>,
}

impl Snapshot {
    fn new(groups: Vec<Group>) -> Snapshot {
        let parents = groups.iter().map(|g| (g.id, g.parent)).collect();
        Snapshot { groups, parents }
    }

    /// Whether `id` is `root` or below it.
    pub fn in_subtree(&self, id: u32, root: u32) -> bool {
        let mut cur = id;
        for _ in 0..=self.groups.len() {
            if cur == root {
                return true;
            }
            match self.parents.get(&cur) {
                Some(&p) if cur != 0 => cur = p,
                _ => return false,
            }
        }
        false
    }

    /// The groups in `root`'s subtree, `root` included.
    pub fn subtree(&self, root: u32) -> impl Iterator<Item = &Group> {
        self.groups
            .iter()
            .filter(move |g| self.in_subtree(g.id, root))
    }
}

/// Which way a [`transfer`] goes, with this process's buffer.
enum Transfer<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

/// Copies between this process's buffer and process `pid`'s memory at `addr`, all of it
/// or an error (`EFAULT` when only part was mapped).
fn transfer(pid: i32, addr: u64, t: Transfer<'_>) -> std::io::Result<()> {
    let (base, len, write) = match t {
        Transfer::Read(b) => (b.as_mut_ptr().cast::<libc::c_void>(), b.len(), false),
        Transfer::Write(b) => (b.as_ptr() as *mut libc::c_void, b.len(), true),
    };
    let local = libc::iovec {
        iov_base: base,
        iov_len: len,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: len,
    };
    // SAFETY: `local` describes the caller's buffer, which a read writes (it is borrowed
    // mutably) and a write only reads; `remote` is only an address in the other process,
    // which the kernel checks.
    let n = unsafe {
        if write {
            libc::process_vm_writev(pid, &local, 1, &remote, 1, 0)
        } else {
            libc::process_vm_readv(pid, &local, 1, &remote, 1, 0)
        }
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if n as usize != len {
        return Err(std::io::Error::from_raw_os_error(libc::EFAULT));
    }
    Ok(())
}

fn read_mem(pid: i32, addr: u64, buf: &mut [u8]) -> std::io::Result<()> {
    transfer(pid, addr, Transfer::Read(buf))
}

fn write_mem(pid: i32, addr: u64, buf: &[u8]) -> std::io::Result<()> {
    transfer(pid, addr, Transfer::Write(buf))
}

fn word(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], off: u64) -> u32 {
    let o = off as usize;
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], off: u64) -> u64 {
    let o = off as usize;
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// Where a file defines `cgmalloc_layout`: `(address, relative)` (relative: add the
/// load address), or `None`.
type Found = Option<(u64, bool)>;

/// What [`symbol_in`] found in each file, by identity (device, inode, size, mtime): `top`
/// and `ps` look into the same files at every refresh.
static FOUND: std::sync::Mutex<Option<HashMap<FileId, Found>>> = std::sync::Mutex::new(None);

/// A file's device, inode, size and modification time.
type FileId = (u64, u64, u64, i64);

fn parse_symbol(path: &std::path::Path) -> Found {
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    let sym = file
        .dynamic_symbols()
        .chain(file.symbols())
        .find(|s| s.name() == Ok(SYMBOL) && s.is_definition())?;
    Some((sym.address(), file.kind() != ObjectKind::Executable))
}

/// The address of `cgmalloc_layout` in file `path` loaded at `base` (where its offset 0
/// is mapped), if the file defines it.
fn symbol_in(path: &std::path::Path, base: u64) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let key = (m.dev(), m.ino(), m.size(), m.mtime());
    let mut cache = FOUND.lock().unwrap_or_else(|e| e.into_inner());
    let found = *cache
        .get_or_insert_with(HashMap::new)
        .entry(key)
        .or_insert_with(|| parse_symbol(path));
    let (addr, relative) = found?;
    Some(if relative { base + addr } else { addr })
}

/// The mapped files of `pid` worth looking into, with the address of their offset 0:
/// those named like cgmalloc's library, and the executable.
fn candidates(pid: i32) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))?;
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let mut out: Vec<(PathBuf, u64)> = Vec::new();
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(_perms), Some(offset), Some(_dev), Some(_inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let path: String = f.collect::<Vec<_>>().join(" ");
        if !path.starts_with('/') || u64::from_str_radix(offset, 16) != Ok(0) {
            continue;
        }
        let path = PathBuf::from(path);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let wanted = name.as_deref().is_some_and(|n| n.contains("cgmalloc"))
            || exe.as_deref() == Some(path.as_path());
        if !wanted || out.iter().any(|(p, _)| *p == path) {
            continue;
        }
        let start = range.split('-').next().unwrap_or("0");
        let Ok(start) = u64::from_str_radix(start, 16) else {
            continue;
        };
        out.push((path, start));
    }
    Ok(out)
}

fn comm_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

impl Target {
    /// The process `pid`, if it runs cgmalloc; `Ok(None)` if it does not.
    pub fn find(pid: i32) -> std::io::Result<Option<Target>> {
        for (path, base) in candidates(pid)? {
            // Read through the process's root, for a process in another mount namespace.
            let through_root = PathBuf::from(format!("/proc/{pid}/root"))
                .join(path.strip_prefix("/").unwrap_or(&path));
            let found = symbol_in(&through_root, base).or_else(|| symbol_in(&path, base));
            if let Some(addr) = found {
                return Ok(Some(Target {
                    pid,
                    comm: comm_of(pid),
                    layout_addr: addr,
                }));
            }
        }
        Ok(None)
    }

    /// `find`, as the subcommands want it: a failure is one line and exit 2.
    pub fn open(pid_arg: &str) -> Result<Target, Fail> {
        let pid: i32 = pid_arg
            .parse()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| Fail::usage(format!("{pid_arg:?} is not a process id")))?;
        match Target::find(pid) {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(Fail::with_code(
                EXIT_FAIL,
                format!("process {pid} does not run cgmalloc"),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Fail::with_code(EXIT_FAIL, format!("no process {pid}")))
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(Fail::with_code(
                EXIT_FAIL,
                format!(
                    "cannot inspect process {pid}: permission denied (only its own user \
                     or root may)"
                ),
            )),
            Err(e) => Err(Fail::with_code(
                EXIT_FAIL,
                format!("cannot inspect process {pid}: {e}"),
            )),
        }
    }

    fn fail(&self, e: std::io::Error) -> Fail {
        let why = if e.raw_os_error() == Some(libc::EPERM) {
            "permission denied (reading another process's memory needs the same user, \
             and root or an ancestor under kernel.yama.ptrace_scope=1)"
                .to_string()
        } else if e.raw_os_error() == Some(libc::ESRCH) {
            "it has exited".to_string()
        } else {
            e.to_string()
        };
        Fail::with_code(
            EXIT_FAIL,
            format!("cannot read process {}: {why}", self.pid),
        )
    }

    fn layout(&self) -> Result<Layout, Fail> {
        let mut head = [0u8; 24];
        read_mem(self.pid, self.layout_addr, &mut head).map_err(|e| self.fail(e))?;
        if &head[..8] != MAGIC {
            return Err(Fail::with_code(
                EXIT_FAIL,
                format!("process {}: cgmalloc_layout has no valid magic", self.pid),
            ));
        }
        let version = word(&head, 1);
        let size = word(&head, 2) as usize;
        let words = (1..=VERSION)
            .contains(&version)
            .then(|| LAYOUT_WORDS[version as usize - 1]);
        let Some(words) = words.filter(|w| size >= 24 + w * 8) else {
            return Err(Fail::with_code(
                EXIT_FAIL,
                format!(
                    "process {}: its cgmalloc has layout version {version}; this cgmalloc \
                     reads versions 1 to {VERSION}",
                    self.pid
                ),
            ));
        };
        let mut rec = vec![0u8; LAYOUT_WORDS[LAYOUT_WORDS.len() - 1] * 8];
        read_mem(self.pid, self.layout_addr + 24, &mut rec[..words * 8])
            .map_err(|e| self.fail(e))?;
        let w = |i| word(&rec, i);
        Ok(Layout {
            table: w(0),
            root_oom_policy: w(1),
            max_groups: w(2),
            page_size: w(3),
            name_max: w(4),
            nr_events: w(5),
            nr_stats: w(6),
            unlimited: w(7),
            bound: w(8),
            slots: w(9),
            slot_size: w(10),
            names: w(11),
            name_len: w(12),
            life: w(13),
            serial: w(14),
            parent: w(15),
            nr_threads: w(16),
            oom_policy: w(17),
            explicit: w(18),
            events: w(19),
            events_local: w(20),
            stats: w(21),
            usage: w(22),
            watermark: w(23),
            failcnt: w(24),
            max: w(25),
            high: w(26),
            soft_limit: w(27),
            low: w(28),
            min: w(29),
            request: w(30),
            threads: w(31),
            max_threads: w(32),
            threads_used: w(33),
            thread_size: w(34),
            thread_tid: w(35),
            thread_group: w(36),
            thread_stock: w(37),
            enforce: w(38),
            psi: w(39),
            psi_words: w(40),
        })
    }

    /// `memory.pressure` of the slot at `addr`, whose area `first` was read with the
    /// table, brought to now: read again until its sequence count was even and unchanged
    /// across the read (the process was not writing it).
    fn pressure(&self, l: &Layout, addr: u64, first: &[u8], now: u64) -> Option<psi::Values> {
        if l.psi == 0 || l.psi_words as usize != psi::WORDS {
            return None;
        }
        let len = 8 * (1 + psi::WORDS);
        let mut area = first.get(..len)?.to_vec();
        for _ in 0..1000 {
            let mut seq = [0u8; 8];
            read_mem(self.pid, addr, &mut seq).ok()?;
            let before = word(&area, 0);
            if before & 1 == 0 && word(&seq, 0) == before {
                let words = core::array::from_fn(|i| word(&area, 1 + i));
                return Some(Psi::from_words(&words).values(now));
            }
            std::thread::yield_now();
            read_mem(self.pid, addr, &mut area).ok()?;
        }
        None
    }

    /// Every group of the process, now.
    pub fn snapshot(&self) -> Result<Snapshot, Fail> {
        let l = self.layout()?;
        if l.nr_events as usize != EVENT_NAMES.len() || l.nr_stats as usize != STAT_NAMES.len() {
            return Err(Fail::with_code(
                EXIT_FAIL,
                format!(
                    "process {}: an unexpected number of events or statistics",
                    self.pid
                ),
            ));
        }
        let rd = |addr: u64, len: usize| -> Result<Vec<u8>, Fail> {
            let mut b = vec![0u8; len];
            read_mem(self.pid, addr, &mut b).map_err(|e| self.fail(e))?;
            Ok(b)
        };
        let bound = (u32_at(&rd(l.table + l.bound, 4)?, 0) as u64).clamp(1, l.max_groups);
        let slots = rd(l.table + l.slots, (bound * l.slot_size) as usize)?;
        let names = rd(l.table + l.names, (bound * l.name_max) as usize)?;
        let name_len = rd(l.table + l.name_len, bound as usize)?;
        let root_policy = u32_at(&rd(l.root_oom_policy, 4)?, 0);
        let now = monotonic_ns();
        let page = l.page_size;
        let limit = |v: u64| {
            let pages = l.unlimited.wrapping_sub(v);
            (pages < l.unlimited / page).then_some(pages * page)
        };
        let mut raw: Vec<(u32, u32, &'static str, Group)> = Vec::new();
        for id in 0..bound as u32 {
            let s = &slots[(id as u64 * l.slot_size) as usize..][..l.slot_size as usize];
            let state = if id == 0 { 1 } else { u32_at(s, l.life) & 3 };
            let state = match state {
                1 | 3 => "live",
                2 => "dying",
                _ => continue,
            };
            let n = (name_len[id as usize] as u64).min(l.name_max) as usize;
            let name_at = (id as u64 * l.name_max) as usize;
            let name = String::from_utf8_lossy(&names[name_at..name_at + n]).into_owned();
            let arr = |off: u64| -> [u64; NR_EVENTS] {
                core::array::from_fn(|i| u64_at(s, off + 8 * i as u64))
            };
            let g = Group {
                id,
                path: name,
                parent: if id == 0 { 0 } else { u32_at(s, l.parent) },
                state,
                current: u64_at(s, l.usage) * page,
                peak: u64_at(s, l.watermark) * page,
                max: limit(u64_at(s, l.max)),
                high: limit(u64_at(s, l.high)),
                soft_limit: limit(u64_at(s, l.soft_limit)),
                low: u64_at(s, l.low) * page,
                min: u64_at(s, l.min) * page,
                failcnt: u64_at(s, l.failcnt),
                events: arr(l.events),
                events_local: arr(l.events_local),
                stats: core::array::from_fn(|i| u64_at(s, l.stats + 8 * i as u64)),
                explicit: u64_at(s, l.explicit) * page,
                oom_policy: "",
                enforce: ENFORCE_NAMES
                    .get(u32_at(s, l.enforce) as usize)
                    .copied()
                    .unwrap_or("on"),
                nr_threads: u32_at(s, l.nr_threads) as u64,
                tids: Vec::new(),
                stock: 0,
                pressure: self.pressure(
                    &l,
                    l.table + l.slots + id as u64 * l.slot_size + l.psi,
                    s.get(l.psi as usize..).unwrap_or_default(),
                    now,
                ),
            };
            raw.push((id, u32_at(s, l.oom_policy), state, g));
        }
        // The thread registry: who is attached where, and the stocks.
        let used = u64_at(&rd(l.threads_used, 8)?, 0).min(l.max_threads);
        let reg = rd(l.threads, (used * l.thread_size) as usize)?;
        for i in 0..used {
            let t = &reg[(i * l.thread_size) as usize..][..l.thread_size as usize];
            let tid = u32_at(t, l.thread_tid);
            let group = u32_at(t, l.thread_group);
            let stock = u64_at(t, l.thread_stock);
            let find =
                |raw: &[(u32, u32, &str, Group)], id: u32| raw.iter().position(|(g, ..)| *g == id);
            if tid != 0 {
                if let Some(k) = find(&raw, group) {
                    raw[k].3.tids.push(tid);
                }
            }
            if let (Some(g), pages @ 1..) = ((stock >> 32).checked_sub(1), stock & 0xffff_ffff) {
                if let Some(k) = find(&raw, g as u32) {
                    raw[k].3.stock += pages * page;
                }
            }
        }
        // Paths and effective policies, walking up to the root.
        let by_id: HashMap<u32, (u32, String, u32)> = raw
            .iter()
            .map(|(id, pol, _, g)| (*id, (g.parent, g.path.clone(), *pol)))
            .collect();
        let mut groups = Vec::new();
        for (id, _, _, mut g) in raw {
            let mut parts = Vec::new();
            let mut policy = None;
            let mut cur = id;
            for _ in 0..=bound {
                let Some((parent, name, pol)) = by_id.get(&cur) else {
                    break;
                };
                if policy.is_none() && *pol != 0 {
                    policy = Some(*pol);
                }
                if cur == 0 {
                    break;
                }
                parts.push(name.clone());
                cur = *parent;
            }
            parts.reverse();
            g.path = format!("/{}", parts.join("/"));
            let p = policy.unwrap_or(root_policy) as usize;
            g.oom_policy = POLICY_NAMES
                .get(p)
                .copied()
                .filter(|_| p != 0)
                .unwrap_or("fail");
            groups.push(g);
        }
        groups.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Snapshot::new(groups))
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock of `memory.pressure`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the timespec on this stack.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What became of a write requested with [`Target::request`].
pub enum Outcome {
    /// Applied: 0, or the negative errno the process answered.
    Applied(i64),
    /// Not applied within the wait: the process applies it at its next charge.
    Queued,
}

impl Target {
    /// Asks the process to write `value` to `file` of `group`, and waits up to `wait`
    /// for its answer.
    pub fn request(
        &self,
        group: &str,
        file: &str,
        value: &str,
        wait: std::time::Duration,
    ) -> Result<Outcome, Fail> {
        let l = self.layout()?;
        let (g, f, v) = (group.as_bytes(), file.as_bytes(), value.as_bytes());
        if g.len() > wire::GROUP_MAX || f.len() > wire::FILE_MAX || v.len() > wire::VALUE_MAX {
            return Err(Fail::with_code(EXIT_FAIL, "the request is too long"));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let token = (nanos ^ (std::process::id() as u64) << 40) | 1;
        let mut body = vec![0u8; wire::BODY_LEN];
        body[..g.len()].copy_from_slice(g);
        body[wire::GROUP_MAX..][..f.len()].copy_from_slice(f);
        body[wire::GROUP_MAX + wire::FILE_MAX..][..v.len()].copy_from_slice(v);
        let check = wire::request_check(token, g, f, v);
        let lens: Vec<u8> = [g.len(), f.len(), v.len()]
            .iter()
            .flat_map(|&n| (n as u32).to_le_bytes())
            .collect();
        let w = |off: usize, b: &[u8]| {
            write_mem(self.pid, l.request + off as u64, b).map_err(|e| self.fail(e))
        };
        w(wire::BODY, &body)?;
        w(wire::CHECK, &check.to_le_bytes())?;
        w(wire::LENS, &lens)?;
        w(wire::TOKEN, &token.to_le_bytes())?;
        let start = std::time::Instant::now();
        loop {
            let mut ans = [0u8; 16];
            // `done`, then `result` after it.
            read_mem(self.pid, l.request + wire::DONE as u64, &mut ans)
                .map_err(|e| self.fail(e))?;
            if word(&ans, 0) == token {
                let result = word(&ans, (wire::RESULT - wire::DONE) / 8);
                return Ok(Outcome::Applied(result as i64));
            }
            if start.elapsed() >= wait {
                return Ok(Outcome::Queued);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Every process the caller may look into that runs cgmalloc, by pid.
pub fn all() -> Vec<Target> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    let me = std::process::id() as i32;
    pids.into_iter()
        .filter(|&p| p != me)
        .filter_map(|p| Target::find(p).ok().flatten())
        .collect()
}
