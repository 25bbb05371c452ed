//! Remote pushes in flight, which `malloc_trim` waits out before it unmaps segments.
//!
//! A thread that pushes blocks onto a span it does not own reads the span and its
//! segment again just after the push (`remote::after_push`), and may settle the span
//! under the segment's claim. By then the span's owner may have collected the blocks,
//! emptied the span and cached the segment, and `Segment::release_cached` may be about
//! to unmap it. So every push is counted, from before its exchange until it is done with
//! the segment, in one of `SLOTS` counters (chosen by the pushing thread's stack
//! address) of the set the current epoch names; and `release_cached`, once it has taken
//! the segments out of the cache, waits out every push counted so far (`wait_for_pushes`:
//! it flips the epoch and waits for the old set to drain, twice, as userspace RCU does).
//!
//! Why that suffices: every block pushed onto a span of a cached segment was collected
//! by an acquire of the span's `thread_free` that read the push, before the segment was
//! emptied, cached and taken out of the cache under the cache lock. The push's epoch
//! load and count, made before its (sequentially consistent) exchange, therefore happen
//! before the waiter's flips and reads: the push counted itself in the set of an epoch
//! current before the first flip, and one of the two waits is on that set, which reads
//! zero only once every push counted in it is done (each takes back only its own count,
//! after its last access, with release ordering). A push that starts later cannot reach
//! a segment taken out of the cache: no block of it is left to push. New pushes count
//! in the other set, so a wait ends however busy the pushers are.
//!
//! Invariants:
//! - a push is counted from before its exchange until after its last access to its
//!   segment (`Pushing` drops then), and nothing it does meanwhile waits for a trim:
//!   the program's code an uncharge may run (its callbacks) runs after;
//! - in a fork child every counter starts at zero: a push in flight in a thread that is
//!   gone there never ends.

use crate::os;
use crate::util::spin::SpinLock;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Counters in a set: enough that threads seldom share one.
const SLOT_BITS: u32 = 5;
const SLOTS: usize = 1 << SLOT_BITS;

/// One counter to a cache line.
#[repr(C, align(64))]
struct Slot(AtomicUsize);

/// Two sets of counters; new pushes count in the set `EPOCH` names.
static COUNTS: [[Slot; SLOTS]; 2] = [const { [const { Slot(AtomicUsize::new(0)) }; SLOTS] }; 2];
static EPOCH: AtomicUsize = AtomicUsize::new(0);

/// Waiters, one at a time (each flips the epoch twice).
static WAITER: SpinLock<()> = SpinLock::new(());

/// A push in flight, counted until this drops.
#[must_use]
pub struct Pushing(&'static AtomicUsize);

impl Pushing {
    /// Counts a push the calling thread is about to make.
    #[inline]
    pub fn start() -> Pushing {
        let marker = 0u8;
        // Threads' stacks lie megabytes apart.
        let sp = core::ptr::addr_of!(marker) as usize;
        let i = (sp >> 20).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (usize::BITS - SLOT_BITS);
        let c = &COUNTS[EPOCH.load(Ordering::Relaxed) & 1][i].0;
        // Ordered before the push's exchange, which releases it (module docs).
        c.fetch_add(1, Ordering::Relaxed);
        Pushing(c)
    }

    /// The push is done with its segment (as dropping it says).
    pub fn done(self) {}
}

impl Drop for Pushing {
    #[inline]
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// Waits until every push that may still touch a segment taken out of the cache before
/// this call is done (module docs).
pub fn wait_for_pushes() {
    let _one = WAITER.lock();
    os::fault::waiting_for_pushes();
    for _ in 0..2 {
        let old = EPOCH.fetch_xor(1, Ordering::SeqCst) & 1;
        for slot in &COUNTS[old] {
            let mut spins = 0u32;
            while slot.0.load(Ordering::Acquire) != 0 {
                if spins < 64 {
                    core::hint::spin_loop();
                    spins += 1;
                } else {
                    os::yield_now();
                }
            }
        }
    }
}

/// In a fork child: the pushes counted were other threads', which do not exist there.
pub fn reset_in_child() {
    for set in &COUNTS {
        for slot in set {
            slot.0.store(0, Ordering::Relaxed);
        }
    }
    // A waiter at the fork was another thread, gone here.
    WAITER.force_unlock();
}
