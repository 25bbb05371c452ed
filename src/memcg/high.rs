//! `memory.high`: after a charge leaves usage above `high` at some level, reclaim the
//! excess there and then throttle the allocating thread for what is still above, growing
//! with the overage (`mem_cgroup_handle_over_high` and `calculate_high_delay` of the
//! kernel).
//!
//! Each level above its `high`, from the charged group up, is reclaimed by the excess
//! read at that moment (`reclaim::reclaim`): the allocator's cached free pages, then the
//! reclaim callbacks (in soft-limit order, as at `max`), then the cached free pages again
//! if the callbacks freed anything, since what they free may sit in the allocator's caches
//! still charged. Only then is the overage read: a callback that frees the excess leaves
//! no delay to sleep.
//!
//! The delay for the largest relative overage `o = (usage - high) / high` over the levels
//! is computed as the kernel does, with `o` in 20-bit fixed point: `o² · HZ >> 20 >> 14`,
//! which is `64 s · o²`, scaled by the pages charged over the 32-page batch and capped at
//! 2 s; delays of 10 ms or less are skipped. So 1.25% over high starts to throttle, and
//! about 18% over reaches the cap.
//!
//! Reclaim and throttle are a stall of `memory.pressure` (`pressure::Stall`); the sleep
//! checks pressure triggers as it goes (`pressure::sleep`).

#![forbid(unsafe_code)]

use super::counter::{Hierarchy, Pages, ENFORCE_OFF, ENFORCE_WARN};
use super::events::Event;
use super::pressure::{self, Stall};
use super::reclaim;
use super::size::PAGE_SIZE;
use super::stock::CHARGE_BATCH;
use super::table::GROUPS;

const PRECISION_SHIFT: u32 = 20;
const SCALING_SHIFT: u32 = 14;
const SECOND_NS: u64 = 1_000_000_000;
const MAX_DELAY_NS: u64 = 2 * SECOND_NS;
const MIN_DELAY_NS: u64 = SECOND_NS / 100;

/// `(usage - high) / high` in fixed point (`PRECISION_SHIFT` fractional bits).
pub fn overage(usage: Pages, high: Pages) -> u64 {
    if usage <= high {
        return 0;
    }
    let high = high.max(1);
    (((usage - high) as u128) << PRECISION_SHIFT).div_ceil(high as u128) as u64
}

/// The throttle for `nr` pages charged at overage `max_overage`, in nanoseconds.
pub fn delay_ns(max_overage: u64, nr: Pages) -> u64 {
    if max_overage == 0 {
        return 0;
    }
    let penalty = (max_overage as u128 * max_overage as u128 * SECOND_NS as u128)
        >> PRECISION_SHIFT
        >> SCALING_SHIFT;
    let penalty = penalty * nr as u128 / CHARGE_BATCH as u128;
    let penalty = penalty.min(MAX_DELAY_NS as u128) as u64;
    if penalty <= MIN_DELAY_NS {
        0
    } else {
        penalty
    }
}

fn max_overage_from(id: u32) -> u64 {
    let mut worst = 0;
    let mut cur = Some(id);
    while let Some(g) = cur {
        let c = GROUPS.counter(g);
        if c.enforced() {
            worst = worst.max(overage(c.usage(), c.high.get()));
        }
        cur = GROUPS.parent(g);
    }
    worst
}

/// After `nr` pages were charged to `id`: counts `high` events, and unless `quiet`
/// reclaims the excess over `high` at each level (cache, callbacks, cache again) and
/// then throttles for the overage left.
pub fn after_charge(id: u32, nr: Pages, quiet: bool) {
    over_high(id, nr, true, !quiet);
}

/// After charges made without reclaim (`NORETRY`, which counted their `high` events)
/// where callbacks could not run: reclaims the excess over `high` at each level of `id`
/// and throttles, as `after_charge` would have.
pub fn handle_over_high(id: u32) {
    if !crate::memcg::threads::in_memalloc() {
        over_high(id, CHARGE_BATCH, false, true);
    }
}

/// Walks `id` and its ancestors: at each level above `high`, counts a `high` event
/// (`count`) and reclaims the excess (`act`); then, with `act`, throttles for the
/// largest overage left, scaled by the `nr` pages charged.
fn over_high(id: u32, nr: Pages, count: bool, act: bool) {
    let mut over_any = false;
    // Reclaim and throttle are a stall of `memory.pressure`, until this returns.
    let mut stall = Stall::new();
    let mut cur = Some(id);
    while let Some(g) = cur {
        let c = GROUPS.counter(g);
        let (usage, high) = (c.usage(), c.high.get());
        let mode = c.enforce.load(core::sync::atomic::Ordering::Relaxed);
        if usage > high && mode != ENFORCE_OFF {
            if count {
                GROUPS.count_event(g, Event::High);
            }
            if mode == ENFORCE_WARN {
                // Reported as if enforced: no reclaim, no throttle.
                if count {
                    GROUPS.count_event(g, Event::Warn);
                    super::report::warn_over(g, b"memory.high", high, usage);
                }
            } else {
                over_any = true;
                if act {
                    stall.begin(id);
                    reclaim::reclaim(g, (usage - high) * PAGE_SIZE);
                }
            }
        }
        cur = GROUPS.parent(g);
    }
    if over_any && act {
        let ns = delay_ns(max_overage_from(id), nr);
        if ns > 0 {
            pressure::sleep(ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curve() {
        assert_eq!(overage(100, 100), 0);
        assert_eq!(overage(200, 100), 1 << PRECISION_SHIFT);
        assert_eq!(delay_ns(0, 32), 0);
        // 1/128 over: 64 s / 16384 ≈ 3.9 ms, below the 10 ms floor.
        assert_eq!(delay_ns(1 << (PRECISION_SHIFT - 7), 32), 0);
        // 1/32 over: 64 s / 1024 = 62.5 ms.
        let d = delay_ns(1 << (PRECISION_SHIFT - 5), 32);
        assert_eq!(d, 62_500_000);
        // 100% over: capped at 2 s.
        assert_eq!(delay_ns(1 << PRECISION_SHIFT, 32), MAX_DELAY_NS);
        // Scaled by the pages charged.
        assert_eq!(delay_ns(1 << (PRECISION_SHIFT - 5), 64), 2 * d);
    }
}
