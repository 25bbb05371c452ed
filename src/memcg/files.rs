//! The interface files of a group (INTERFACE.md "Interface files"): their text on read,
//! their effect on write. Reads format into the caller's buffer without allocating.
//!
//! Errors: an unknown file is `EINVAL`; reading a write-only file or writing a read-only
//! one is `EACCES`; a malformed value is `EINVAL` and changes nothing.

#![forbid(unsafe_code)]

use super::counter::{Hierarchy, Pages, UNLIMITED};
use super::events::{StatKey, EVENT_NAMES, STAT_NAMES};
use super::oom::{self, Policy};
use super::reclaim;
use super::size::{self, Size, PAGE_SIZE};
use super::table::GROUPS;
use super::threads;
use super::wire::ENFORCE_NAMES;
use crate::util::fmtbuf::FmtBuf;
use crate::util::hook::Hook;
use std::sync::atomic::Ordering;

type Errno = i32;

/// Byte counts of the allocator's memory in a subtree, for `memory.stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    pub allocated: u64,
    pub small: u64,
    pub large: u64,
    pub cached: u64,
    /// Pages charged that hold no live block: `cached`, and the free slices of segments
    /// not purged yet.
    pub free: u64,
    /// The allocator's own metadata (segment headers, thread states, heaps), for the
    /// root: resident, and charged to no group.
    pub meta: u64,
}

/// `fn(subtree root) -> AllocStats`, installed by the allocator.
pub type AllocStatsFn = fn(u32) -> AllocStats;
static ALLOC_STATS: Hook<AllocStatsFn> = Hook::new();

pub fn set_alloc_stats(f: AllocStatsFn) {
    ALLOC_STATS.install(f);
}

pub fn alloc_stats(id: u32) -> AllocStats {
    ALLOC_STATS
        .get()
        .map_or_else(AllocStats::default, |f| f(id))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    Both,
}

const FILES: &[(&str, Access)] = &[
    ("memory.current", Access::Read),
    ("memory.peak", Access::Both),
    ("memory.max", Access::Both),
    ("memory.high", Access::Both),
    ("memory.low", Access::Both),
    ("memory.min", Access::Both),
    ("memory.soft_limit_in_bytes", Access::Both),
    ("memory.failcnt", Access::Both),
    ("memory.events", Access::Read),
    ("memory.events.local", Access::Read),
    ("memory.stat", Access::Read),
    ("memory.oom.policy", Access::Both),
    ("memory.enforce", Access::Both),
    ("memory.reclaim", Access::Write),
    ("memory.pressure", Access::Read),
    ("cgroup.threads", Access::Read),
    ("cgroup.stat", Access::Read),
];

fn access(name: &[u8], want: Access) -> Result<(), Errno> {
    let (_, a) = FILES
        .iter()
        .find(|(n, _)| n.as_bytes() == name)
        .ok_or(libc::EINVAL)?;
    if *a == Access::Both || *a == want {
        Ok(())
    } else {
        Err(libc::EACCES)
    }
}

fn push_limit(out: &mut FmtBuf<'_>, pages: Pages) {
    if pages == UNLIMITED {
        out.push(b"max\n");
    } else {
        out.push_u64(pages.saturating_mul(PAGE_SIZE));
        out.push(b"\n");
    }
}

fn push_kv(out: &mut FmtBuf<'_>, key: &str, v: u64) {
    out.push(key.as_bytes());
    out.push(b" ");
    out.push_u64(v);
    out.push(b"\n");
}

/// Writes the text of file `name` of group `id` into `out`.
pub fn read(id: u32, name: &[u8], out: &mut FmtBuf<'_>) -> Result<(), Errno> {
    access(name, Access::Read)?;
    let c = GROUPS.counter(id);
    match name {
        b"memory.current" => push_limit(out, c.usage()),
        b"memory.peak" => push_limit(out, c.watermark.load(Ordering::Relaxed)),
        b"memory.max" => push_limit(out, c.max.get()),
        b"memory.high" => push_limit(out, c.high.get()),
        b"memory.low" => push_limit(out, c.low.load(Ordering::Relaxed)),
        b"memory.min" => push_limit(out, c.min.load(Ordering::Relaxed)),
        b"memory.soft_limit_in_bytes" => push_limit(out, c.soft_limit.get()),
        b"memory.failcnt" => {
            out.push_u64(c.failcnt.load(Ordering::Relaxed));
            out.push(b"\n");
        }
        b"memory.events" | b"memory.events.local" => {
            let ev = GROUPS.events(id, name == b"memory.events.local");
            for (i, key) in EVENT_NAMES.iter().enumerate() {
                push_kv(out, key, ev[i]);
            }
        }
        b"memory.stat" => {
            let a = alloc_stats(id);
            push_kv(out, "allocated", a.allocated);
            push_kv(out, "small", a.small);
            push_kv(out, "large", a.large);
            push_kv(out, "cached", a.cached);
            push_kv(out, "free", a.free);
            if id == super::table::ROOT {
                push_kv(out, "meta", a.meta);
            }
            push_kv(out, "stock", threads::stock_pages(id) * PAGE_SIZE);
            let explicit: u64 = GROUPS
                .subtree(id)
                .map(|g| GROUPS.slot(g).explicit.load(Ordering::Relaxed))
                .sum();
            push_kv(out, "explicit", explicit * PAGE_SIZE);
            for (key, stat) in STAT_NAMES.iter().zip(StatKey::ALL) {
                push_kv(out, key, GROUPS.stat_hier(id, stat));
            }
            if id == super::table::ROOT {
                // What `N%` means here: `container_limit` or `mem_total`.
                if let Some((bytes, base)) = size::percent_base() {
                    push_kv(out, base.key(), bytes);
                }
            }
        }
        b"memory.oom.policy" => {
            out.push(oom::effective_policy(id).name().as_bytes());
            out.push(b"\n");
        }
        b"memory.enforce" => {
            out.push(ENFORCE_NAMES[c.enforce.load(Ordering::Relaxed) as usize % 3].as_bytes());
            out.push(b"\n");
        }
        b"memory.pressure" => super::pressure::read(id).write(&mut |b| out.push(b)),
        b"cgroup.threads" => threads::for_each_thread_in(id, |tid| {
            out.push_u64(tid as u64);
            out.push(b"\n");
        }),
        b"cgroup.stat" => {
            let (live, dying) = GROUPS.count_descendants(id);
            push_kv(out, "nr_descendants", live);
            push_kv(out, "nr_dying_descendants", dying);
        }
        _ => return Err(libc::EINVAL),
    }
    Ok(())
}

fn parse_size(value: &[u8]) -> Result<Size, Errno> {
    size::parse(value).map_err(|_| libc::EINVAL)
}

/// Applies `value` to file `name` of group `id`. May run reclaim (never with a lock held).
pub fn write(id: u32, name: &[u8], value: &[u8]) -> Result<(), Errno> {
    access(name, Access::Write)?;
    let c = GROUPS.counter(id);
    match name {
        b"memory.peak" => c.reset_watermark(),
        b"memory.max" => {
            let pages = parse_size(value)?.pages();
            c.max.set(pages);
            shrink_to(id, pages);
        }
        b"memory.high" => {
            let pages = parse_size(value)?.pages();
            c.high.set(pages);
            let usage = c.usage();
            if usage > pages {
                reclaim::reclaim(id, (usage - pages) * PAGE_SIZE);
            }
        }
        b"memory.low" => c.low.store(parse_size(value)?.pages(), Ordering::Relaxed),
        b"memory.min" => c.min.store(parse_size(value)?.pages(), Ordering::Relaxed),
        b"memory.soft_limit_in_bytes" => c.soft_limit.set(parse_size(value)?.pages()),
        b"memory.failcnt" => {
            if parse_size(value)? != Size::Bytes(0) {
                return Err(libc::EINVAL);
            }
            c.failcnt.store(0, Ordering::Relaxed);
        }
        b"memory.oom.policy" => oom::set_policy(id, Policy::parse(value).ok_or(libc::EINVAL)?),
        b"memory.enforce" => {
            let v = value.trim_ascii();
            let mode = ENFORCE_NAMES
                .iter()
                .position(|n| n.as_bytes() == v)
                .ok_or(libc::EINVAL)?;
            super::charge::set_enforce(id, mode as u32);
        }
        b"memory.reclaim" => {
            let want = match parse_size(value)? {
                Size::Bytes(b) => b,
                Size::Max => u64::MAX,
            };
            return reclaim_bytes(id, want);
        }
        _ => return Err(libc::EINVAL),
    }
    Ok(())
}

/// After `max` was lowered: drain stocks and reclaim until usage fits, while reclaim
/// makes progress (`memory_max_write`). Usage left above stays; new charges fail.
fn shrink_to(id: u32, max: Pages) {
    let c = GROUPS.counter(id);
    let mut drained = false;
    for _ in 0..super::charge::MAX_RETRIES {
        let usage = c.usage();
        if usage <= max {
            return;
        }
        if !drained {
            drained = true;
            threads::drain_all_stock(id);
            continue;
        }
        if !reclaim::reclaim(id, (usage - max) * PAGE_SIZE).any() {
            return;
        }
    }
}

/// Proactive reclaim of `want` bytes (`memory.reclaim`); `EAGAIN` if less was freed.
pub fn reclaim_bytes(id: u32, want: u64) -> Result<(), Errno> {
    let mut got = 0u64;
    for _ in 0..super::charge::MAX_RETRIES {
        if got >= want {
            break;
        }
        let r = reclaim::reclaim(id, want - got);
        if !r.any() {
            break;
        }
        got += r.bytes();
    }
    if got >= want {
        Ok(())
    } else {
        Err(libc::EAGAIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memcg::control;
    use crate::memcg::table::ROOT;

    /// A new group of the process's table, by id (each test uses names of its own).
    fn group(path: &str) -> u32 {
        (control::create(path.as_bytes()).unwrap() & 0xffff) as u32
    }

    fn text(id: u32, name: &str) -> Result<String, Errno> {
        let mut buf = [0u8; 512];
        let mut out = FmtBuf::new(&mut buf);
        read(id, name.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out.as_bytes().to_vec()).unwrap())
    }

    #[test]
    fn unknown_read_only_and_write_only_files() {
        for name in ["memory.nope", "memory.max\n", "", "memory"] {
            assert_eq!(text(ROOT, name), Err(libc::EINVAL), "{name:?}");
            assert_eq!(
                write(ROOT, name.as_bytes(), b"1"),
                Err(libc::EINVAL),
                "{name:?}"
            );
        }
        for name in [
            "memory.current",
            "memory.events",
            "memory.events.local",
            "memory.stat",
            "memory.pressure",
            "cgroup.threads",
            "cgroup.stat",
        ] {
            assert_eq!(
                write(ROOT, name.as_bytes(), b"0"),
                Err(libc::EACCES),
                "{name}"
            );
            assert!(text(ROOT, name).is_ok(), "{name}");
        }
        assert_eq!(text(ROOT, "memory.reclaim"), Err(libc::EACCES));
    }

    #[test]
    fn limits_are_read_back_in_bytes_rounded_down_to_pages() {
        let g = group("/files_limits");
        for file in [
            "memory.max",
            "memory.high",
            "memory.low",
            "memory.min",
            "memory.soft_limit_in_bytes",
        ] {
            let default = if file == "memory.low" || file == "memory.min" {
                "0\n"
            } else {
                "max\n"
            };
            assert_eq!(text(g, file).unwrap(), default, "{file}");
            write(g, file.as_bytes(), b"64M").unwrap();
            assert_eq!(text(g, file).unwrap(), "67108864\n", "{file}");
            write(g, file.as_bytes(), b" 5000 \n").unwrap();
            assert_eq!(text(g, file).unwrap(), "4096\n", "{file}");
            for bad in [&b"garbage"[..], b"", b"-1", b"1.5G", b"101%"] {
                assert_eq!(write(g, file.as_bytes(), bad), Err(libc::EINVAL), "{file}");
            }
            assert_eq!(
                text(g, file).unwrap(),
                "4096\n",
                "{file}: a refused write changes nothing"
            );
            write(g, file.as_bytes(), b"max").unwrap();
            assert_eq!(text(g, file).unwrap(), "max\n", "{file}");
        }
    }

    #[test]
    fn counters_events_policy_and_stat_texts() {
        let g = group("/files_texts");
        assert_eq!(text(g, "memory.current").unwrap(), "0\n");
        assert_eq!(text(g, "memory.peak").unwrap(), "0\n");
        write(g, b"memory.peak", b"anything").unwrap();
        assert_eq!(text(g, "memory.failcnt").unwrap(), "0\n");
        assert_eq!(write(g, b"memory.failcnt", b"1"), Err(libc::EINVAL));
        write(g, b"memory.failcnt", b"0\n").unwrap();
        let events = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\nwarn 0\n";
        assert_eq!(text(g, "memory.events").unwrap(), events);
        assert_eq!(text(g, "memory.events.local").unwrap(), events);
        assert_eq!(text(g, "memory.oom.policy").unwrap(), "fail\n", "inherited");
        write(g, b"memory.oom.policy", b"force\n").unwrap();
        assert_eq!(text(g, "memory.oom.policy").unwrap(), "force\n");
        assert_eq!(write(g, b"memory.oom.policy", b"retry"), Err(libc::EINVAL));
        assert_eq!(text(g, "memory.oom.policy").unwrap(), "force\n");
        assert_eq!(
            text(g, "cgroup.stat").unwrap(),
            "nr_descendants 0\nnr_dying_descendants 0\n"
        );
        assert_eq!(text(g, "cgroup.threads").unwrap(), "");
        let stat = text(g, "memory.stat").unwrap();
        let keys: Vec<&str> = stat.lines().map(|l| l.split(' ').next().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "allocated",
                "small",
                "large",
                "cached",
                "free",
                "stock",
                "explicit",
                "nr_charges",
                "nr_uncharges",
                "reclaim_calls",
                "reclaimed"
            ]
        );
        assert!(stat.lines().all(|l| l.ends_with(" 0")), "{stat}");
        // Nothing to reclaim: asking for nothing succeeds, asking for more is EAGAIN.
        write(g, b"memory.reclaim", b"0").unwrap();
        assert_eq!(write(g, b"memory.reclaim", b"1M"), Err(libc::EAGAIN));
        assert_eq!(write(g, b"memory.reclaim", b"x"), Err(libc::EINVAL));
    }
}
