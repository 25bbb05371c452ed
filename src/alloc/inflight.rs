//! Remote pushes in flight, which `malloc_trim` waits out before it unmaps segments.
//!
//! A thread that pushes blocks onto a span it does not own reads the span and its
//! segment again just after the push (`remote::after_push`), and may settle the span
//! under the segment's claim. By then the span's owner may have collected the blocks,
//! emptied the span and cached the segment, and `Segment::release_cached` may be about
//! to unmap it. So every push is counted, from before its exchange until it is done with
//! the segment, in one of `SLOTS` counters (chosen by the pushing thread's stack
//! address), and `release_cached`, once it has taken the segments out of the cache,
//! waits until it has seen every counter at zero before it unmaps them.
//!
//! Why that suffices: every block pushed onto a span of a cached segment was collected
//! by an acquire of the span's `thread_free` that read the push, before the segment was
//! emptied, cached and taken out of the cache under the cache lock. The count, made
//! before the push's (sequentially consistent) exchange, therefore happens before the
//! waiter reads the counter, which includes it until the push is done; and a counter
//! read at zero has every push it counted done (each push takes back only its own
//! count, after its last read, with release ordering). A push that starts later cannot
//! reach a segment taken out of the cache: no block of it is left to push. The waiter
//! needs each counter at zero once, not all of them at once, and a push is short.
//!
//! Invariants:
//! - a push is counted from before its exchange until after its last access to its
//!   segment (`Pushing` drops then), and nothing it does meanwhile waits for a trim:
//!   the program's code an uncharge may run (its callbacks) runs after;
//! - in a fork child every counter starts at zero: a push in flight in a thread that is
//!   gone there never ends.

use crate::os;
use core::sync::atomic::{AtomicUsize, Ordering};

/// Counters: enough that threads seldom share one.
const SLOT_BITS: u32 = 5;
const SLOTS: usize = 1 << SLOT_BITS;

/// One counter to a cache line.
#[repr(C, align(64))]
struct Slot(AtomicUsize);

static COUNTS: [Slot; SLOTS] = [const { Slot(AtomicUsize::new(0)) }; SLOTS];

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
        let c = &COUNTS[i].0;
        // Ordered before the push's exchange, which releases it (module docs).
        c.fetch_add(1, Ordering::Relaxed);
        Pushing(c)
    }
}

impl Pushing {
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
    for slot in &COUNTS {
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

/// In a fork child: the pushes counted were other threads', which do not exist there.
pub fn reset_in_child() {
    for slot in &COUNTS {
        slot.0.store(0, Ordering::Relaxed);
    }
}
