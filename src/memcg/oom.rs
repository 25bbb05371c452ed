//! The end of the charge path: the OOM handler of the over-limit group (or its nearest
//! ancestor with one), else its `memory.oom.policy`.
//!
//! The handler runs in the allocating thread with no lock held and its charges forced.
//! Policies are inherited from the parent until written; the root's defaults to `fail`
//! (or `CGMALLOC_OOM`). `abort` prints the group report to stderr and aborts.

#![forbid(unsafe_code)]

use super::callbacks::{self, Callback, OomInfoC};
use super::counter::{Hierarchy, Pages};
use super::size::PAGE_SIZE;
use super::table::GROUPS;
use super::threads;
use std::sync::atomic::{AtomicU32, Ordering};

/// `memory.oom.policy` values (0 in a slot means "inherit").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Fail = 1,
    Abort = 2,
    Force = 3,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Fail => "fail",
            Policy::Abort => "abort",
            Policy::Force => "force",
        }
    }

    pub fn parse(s: &[u8]) -> Option<Policy> {
        let s = s.strip_suffix(b"\n").unwrap_or(s).trim_ascii();
        match s {
            b"fail" => Some(Policy::Fail),
            b"abort" => Some(Policy::Abort),
            b"force" => Some(Policy::Force),
            _ => None,
        }
    }

    fn from_u32(v: u32) -> Option<Policy> {
        match v {
            1 => Some(Policy::Fail),
            2 => Some(Policy::Abort),
            3 => Some(Policy::Force),
            _ => None,
        }
    }
}

/// The root's policy when `memory.oom.policy` of the root was never written.
pub static ROOT_DEFAULT: AtomicU32 = AtomicU32::new(Policy::Fail as u32);

pub fn set_root_default(p: Policy) {
    ROOT_DEFAULT.store(p as u32, Ordering::Relaxed);
}

/// The policy in force for `id`: its own, else the nearest ancestor's, else the root
/// default.
pub fn effective_policy(id: u32) -> Policy {
    let mut cur = Some(id);
    while let Some(g) = cur {
        if let Some(p) = Policy::from_u32(GROUPS.slot(g).oom_policy.load(Ordering::Relaxed)) {
            return p;
        }
        cur = GROUPS.parent(g);
    }
    Policy::from_u32(ROOT_DEFAULT.load(Ordering::Relaxed)).unwrap_or(Policy::Fail)
}

pub fn set_policy(id: u32, p: Policy) {
    GROUPS
        .slot(id)
        .oom_policy
        .store(p as u32, Ordering::Relaxed);
}

/// What the OOM path decided (`CGM_OOM_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Fail = 0,
    Retry = 1,
    Force = 2,
    Abort = 3,
}

impl Action {
    /// A handler's return value (`CGM_OOM_*`); anything else fails the charge.
    pub fn decode(r: i32) -> Action {
        match r {
            1 => Action::Retry,
            2 => Action::Force,
            3 => Action::Abort,
            _ => Action::Fail,
        }
    }
}

/// Installs `func` as the OOM handler of `id` (handle `handle`), replacing any previous
/// one; `None` clears it.
pub fn set_handler(id: u32, handle: u64, handler: Option<Callback>) -> Result<(), i32> {
    let slot = &GROUPS.slot(id).oom_handler;
    let new = match handler {
        Some(callback) => {
            let (reg, index) = callbacks::add(handle, callback)?;
            encode(index, reg)
        }
        None => 0,
    };
    let old = slot.swap(new, Ordering::AcqRel);
    if old != 0 {
        let (index, reg) = decode(old);
        callbacks::remove_index(index, reg);
    }
    Ok(())
}

// The slot word keeps the entry index and the low bits of its registration id, so a
// stale word never names a newer registration at the same index.
const REG_MASK: u64 = (1 << 21) - 1;
const _: () = assert!(callbacks::MAX_CALLBACKS <= 1 << 10);

fn encode(index: usize, reg: u64) -> u32 {
    1 << 31 | ((reg & REG_MASK) as u32) << 10 | index as u32
}

fn decode(w: u32) -> (usize, u64) {
    ((w & 0x3ff) as usize, ((w >> 10) & REG_MASK as u32) as u64)
}

fn find_handler(over: u32) -> Option<callbacks::Held> {
    let mut cur = Some(over);
    while let Some(g) = cur {
        let w = GROUPS.slot(g).oom_handler.load(Ordering::Acquire);
        if w != 0 {
            let (index, reg) = decode(w);
            if let Some(h) = callbacks::hold_index(index, reg, REG_MASK) {
                return Some(h);
            }
        }
        cur = GROUPS.parent(g);
    }
    None
}

/// Runs the OOM decision for a charge of `nr` pages to `id` refused at `over`.
pub fn decide(id: u32, over: u32, nr: Pages) -> Action {
    if let Some(held) = find_handler(over) {
        let c = GROUPS.counter(over);
        let max = c.max.get();
        let info = OomInfoC {
            group: GROUPS.handle(id),
            over_limit: GROUPS.handle(over),
            bytes: (nr * PAGE_SIZE) as usize,
            usage: c.usage() * PAGE_SIZE,
            max: max.saturating_mul(PAGE_SIZE),
        };
        // The handler's reference goes back inside too: its drop may drop the handler
        // (removed meanwhile), the program's code.
        let r = threads::with_memalloc(|| {
            let r = held.call_oom(&info);
            drop(held);
            r
        });
        return r.map_or(Action::Fail, Action::decode);
    }
    match effective_policy(over) {
        Policy::Fail => Action::Fail,
        Policy::Force => Action::Force,
        Policy::Abort => Action::Abort,
    }
}

/// Prints the group report and dies with one line naming the group.
pub fn abort_oom(over: u32, nr: Pages) -> ! {
    super::report::write_table(crate::os::stderr::fd(), b"cgmalloc: group report\n");
    let mut path = [0u8; 1200];
    let mut b = crate::util::fmtbuf::FmtBuf::new(&mut path);
    GROUPS.write_path(over, &mut b);
    let mut num = [0u8; 24];
    let mut n = crate::util::fmtbuf::FmtBuf::new(&mut num);
    n.push_u64(nr * PAGE_SIZE);
    crate::util::fatal::fatal(&[
        b"out of memory: a charge of ",
        n.as_bytes(),
        b" bytes exceeds the limit of ",
        b.as_bytes(),
        b" (memory.oom.policy abort)",
    ])
}
