//! `fork()`: every allocator and accounting lock is taken before the fork and released
//! after it in both processes, so the child never inherits a lock held by a thread that
//! does not exist there. In the child, only the forking thread survives, and the other
//! threads may have been anywhere, between a charge and its record or a record and its
//! uncharge included: first every counter is set to what the spans, mappings, stocks and
//! explicit charges record (`memcg::ledger::rebuild`), so the child starts exact; then
//! the other threads' stocks go back to their groups (`memcg::threads::fork_child`),
//! their segments (and retired states' segments) become abandoned (the abandoned list
//! is rebuilt from scratch, the retired states recycled), and their cached spans and
//! mappings are released. Each release uncharges what its record
//! holds, whatever state the vanished thread left it in. One window is not covered: a
//! span whose descriptor a vanished thread had reset (`Span::reset`, state `FREE`) but
//! whose slices it had not yet returned to its segment, or that it had taken slices for
//! but not yet formatted (a few instructions each), is skipped; its slices stay out of
//! use in the child and the pages its record holds stay charged there.

use super::abandoned;
use super::charged::Owed;
use super::retired;
use super::segment;
use super::thread;
use super::tld;
use super::types::{Segment, State, KIND_LARGE};
use crate::memcg;
use core::ptr;
use std::sync::atomic::Ordering;

extern "C" fn prepare() {
    // A child must not inherit the one-time `membarrier` decision half made (its `Once`
    // would never complete there): make it now, waiting for a thread making it.
    super::medium::init_parking();
    memcg::table::GROUPS.lock_for_fork();
    memcg::callbacks::lock_for_fork();
    memcg::threshold::lock_for_fork();
    memcg::ledger::lock_for_fork();
    segment::lock_for_fork();
    abandoned::lock_for_fork();
    retired::lock_for_fork();
    thread::lock_pools_for_fork();
    // A leaf lock (nothing is taken under it): last.
    memcg::pressure::lock_for_fork();
}

extern "C" fn parent() {
    memcg::pressure::unlock_after_fork();
    thread::unlock_pools_after_fork();
    retired::unlock_after_fork();
    abandoned::unlock_after_fork();
    segment::unlock_after_fork();
    memcg::ledger::unlock_after_fork();
    memcg::threshold::unlock_after_fork();
    memcg::callbacks::unlock_after_fork();
    memcg::table::GROUPS.unlock_after_fork();
}

extern "C" fn child() {
    parent();
    memcg::ledger::rebuild(&mut |f| super::account::records(f));
    memcg::threads::fork_child();
    memcg::pressure::fork_child();
    super::inflight::reset_in_child();
    let me = tld::current();
    abandoned::reset_in_child();
    let settle = |seg: *mut Segment| {
        // SAFETY: a listed, mapped segment; no other thread runs.
        let sg = unsafe { &mut *seg };
        if sg.kind.load(Ordering::Relaxed) == KIND_LARGE {
            let m = &sg.large;
            // Cached by a thread that is gone, or taken out of its cache (to evict, to
            // lend pages, or to serve a block it did not get to hand out).
            let st = m.state.load(Ordering::Relaxed);
            let owner = m.cache_tld.load(Ordering::Relaxed);
            let in_cache = st == State::Cached
                || st == State::Purged
                || (st == State::Active && !owner.is_null());
            if in_cache && owner != me {
                // SAFETY: a mapping a vanished thread held (cached or taken out of its
                // cache), no longer used; no other thread runs.
                unsafe { super::large::release(seg) };
            }
            return;
        }
        // A claim held at the fork was held by a thread that is gone (a reclaimer takes
        // the claim of any thread's segment, this one's too; this thread was not in the
        // allocator): nobody holds it in the child.
        sg.claim.store(0, Ordering::Relaxed);
        // (A forking thread that never allocated owns nothing: `me` null must not
        // match the segments already abandoned.)
        if !me.is_null() && sg.tld.load(Ordering::Relaxed) == me {
            return;
        }
        sg.tld.store(ptr::null_mut(), Ordering::SeqCst);
        sg.owner.store(0, Ordering::Relaxed);
        let mut owed = Owed::new();
        // SAFETY: a span segment whose `tld` is now null; no other thread runs.
        let destroyed = unsafe { thread::settle_spans(seg, &mut owed) };
        if destroyed {
            // SAFETY: left with no span, and no thread that could use it runs.
            unsafe { Segment::destroy(seg) };
        } else {
            // SAFETY: settled (`orphan_group` set), `tld` null, on no list (the list was
            // reset); no other thread runs.
            unsafe { abandoned::push(seg) };
        }
        owed.apply();
    };
    // Only this thread exists now: the segment list can be walked and changed freely.
    // SAFETY: in a fork child only this thread runs.
    unsafe { Segment::for_each_unlocked(settle) };
    // SAFETY: a fork child; retired states' segments were settled above, as the
    // vanished threads' were.
    unsafe { thread::forget_retired_in_child() };
}

/// Registers the handlers (once, at initialisation).
pub fn register() {
    crate::os::thread::atfork(prepare, parent, child);
}
