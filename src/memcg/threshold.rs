//! Threshold notifications (`cgroup.event_control` of cgroup v1, as eventfds): an eventfd
//! is signalled (its counter incremented) each time a group's usage crosses a threshold
//! in either direction.
//!
//! Usage is checked whenever a group's page counter moves (every batched charge and every
//! uncharge that reaches the counters), which stocks bound to 32 pages, so a crossing is
//! seen no later than the next 32 pages charged or uncharged. Groups without thresholds
//! skip the check on one relaxed load (`nr_thresholds`).
//!
//! The library keeps its own duplicate of each eventfd and signals that one, so a caller
//! closing its copy cannot make it signal an unrelated file.

#![forbid(unsafe_code)]

use super::counter::Hierarchy;
use super::size::PAGE_SIZE;
use super::table::{self, GROUPS};
use crate::util::spin::SpinLock;
use std::sync::atomic::Ordering;

pub const MAX_THRESHOLDS: usize = 256;

#[derive(Clone, Copy)]
struct Entry {
    /// Group handle; 0 when free.
    group: u64,
    user_fd: i32,
    own_fd: i32,
    bytes: u64,
    above: bool,
}

/// A free slot: all zero bytes, so that the table lives in `.bss` and a process that
/// registers nothing has none of it resident. A free slot's fds are never read.
const FREE: Entry = Entry {
    group: 0,
    user_fd: 0,
    own_fd: 0,
    bytes: 0,
    above: false,
};

static TABLE: SpinLock<[Entry; MAX_THRESHOLDS]> = SpinLock::new([FREE; MAX_THRESHOLDS]);

fn usage_bytes(id: u32) -> u64 {
    GROUPS.counter(id).usage() * PAGE_SIZE
}

/// Registers a threshold of `bytes` on group `id` (handle `handle`); returns the eventfd
/// for the caller.
pub fn add(id: u32, handle: u64, bytes: u64) -> Result<i32, i32> {
    table::USAGE_WATCHED.install(check);
    table::GROUP_FREED[table::FREED_THRESHOLDS].install(group_freed);
    let (user_fd, own_fd) = crate::os::eventfd_pair()?;
    let mut t = TABLE.lock();
    let Some(e) = t.iter_mut().find(|e| e.group == 0) else {
        drop(t);
        crate::os::close(user_fd);
        crate::os::close(own_fd);
        return Err(libc::ENOSPC);
    };
    *e = Entry {
        group: handle,
        user_fd,
        own_fd,
        bytes,
        above: usage_bytes(id) >= bytes,
    };
    GROUPS
        .slot(id)
        .nr_thresholds
        .fetch_add(1, Ordering::Relaxed);
    Ok(user_fd)
}

/// Unregisters the eventfd `fd` of group `handle` and closes both copies.
pub fn remove(id: u32, handle: u64, fd: i32, close_user: bool) -> Result<(), i32> {
    let e = {
        let mut t = TABLE.lock();
        let e = t
            .iter_mut()
            .find(|e| e.group == handle && e.user_fd == fd)
            .ok_or(libc::ENOENT)?;
        core::mem::replace(e, FREE)
    };
    GROUPS
        .slot(id)
        .nr_thresholds
        .fetch_sub(1, Ordering::Relaxed);
    crate::os::close(e.own_fd);
    if close_user {
        crate::os::close(e.user_fd);
    }
    Ok(())
}

/// Signals the thresholds of `id` that its current usage has crossed.
pub fn check(id: u32) {
    if GROUPS.slot(id).nr_thresholds.load(Ordering::Relaxed) == 0 {
        return;
    }
    let handle = GROUPS.handle(id);
    let now = usage_bytes(id);
    let mut t = TABLE.lock();
    for e in t.iter_mut().filter(|e| e.group == handle) {
        let above = now >= e.bytes;
        if above != e.above {
            e.above = above;
            crate::os::eventfd_signal(e.own_fd);
        }
    }
}

/// Ends the thresholds of a freed group: the library's copies are closed.
pub fn group_freed(handle: u64) {
    let mut t = TABLE.lock();
    for e in t.iter_mut().filter(|e| e.group == handle) {
        crate::os::close(e.own_fd);
        *e = FREE;
    }
}

/// Takes the table lock for `fork()`.
pub fn lock_for_fork() {
    TABLE.lock_for_fork();
}

pub fn unlock_after_fork() {
    TABLE.force_unlock();
}
