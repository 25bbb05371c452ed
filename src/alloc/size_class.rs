//! Size classes for small blocks.
//!
//! Every block is a multiple of 16 bytes, so every block is 16-byte aligned when its span
//! starts on a 16-byte boundary. Classes are every 16 bytes up to 128 bytes (the finest
//! the alignment allows, at most 15 bytes of waste), then eight per doubling: from 128 up,
//! a block is at most 12.5% larger than the largest request it serves.
//!
//! `class_of(size)` for `size ≤ LOOKUP_MAX` is one table load; above it, a few shifts.
//! Invariants: `size_of(class_of(n)) ≥ n`; classes grow strictly; `class_of` of a
//! class's own size is that class.

/// Largest block served from size classes; larger requests are medium or large blocks,
/// charged to the page.
pub const SMALL_MAX: usize = 32 << 10;
/// Largest medium block: a span of its own in a segment (at most 16 slices). Larger
/// blocks are large mappings.
pub const MEDIUM_MAX: usize = 1 << 20;
/// Sizes up to this use the lookup table.
pub const LOOKUP_MAX: usize = 1024;

const fn size_of_const(class: usize) -> usize {
    if class < 8 {
        (class + 1) * 16
    } else {
        let k = (class - 8) / 8 + 7; // the doubling: 2^k < size <= 2^(k+1)
        let j = (class - 8) % 8 + 1;
        (1 << k) + j * (1 << (k - 3))
    }
}

const fn count_classes() -> usize {
    let mut c = 0;
    while size_of_const(c) < SMALL_MAX {
        c += 1;
    }
    c + 1
}

/// Number of small size classes.
pub const NR_CLASSES: usize = count_classes();

/// Block size of each class.
pub static SIZES: [u32; NR_CLASSES] = {
    let mut t = [0u32; NR_CLASSES];
    let mut c = 0;
    while c < NR_CLASSES {
        t[c] = size_of_const(c) as u32;
        c += 1;
    }
    t
};

const fn class_of_slow(size: usize) -> usize {
    if size <= 128 {
        return if size == 0 { 0 } else { size.div_ceil(16) - 1 };
    }
    // 2^k < size <= 2^(k+1), step 2^(k-3).
    let k = (usize::BITS - 1 - (size - 1).leading_zeros()) as usize;
    let step_shift = k - 3;
    let j = (size - (1 << k) + (1 << step_shift) - 1) >> step_shift; // 1..=8
    8 + (k - 7) * 8 + (j - 1)
}

static LOOKUP: [u8; LOOKUP_MAX / 16 + 1] = {
    let mut t = [0u8; LOOKUP_MAX / 16 + 1];
    let mut i = 0;
    while i < t.len() {
        t[i] = class_of_slow(i * 16) as u8;
        i += 1;
    }
    t
};

/// The class serving `size` bytes (`size ≤ SMALL_MAX`).
#[inline]
pub fn class_of(size: usize) -> usize {
    if size <= LOOKUP_MAX {
        crate::util::local::local_static!(LOOKUP)[(size + 15) >> 4] as usize
    } else {
        class_of_slow(size)
    }
}

/// Slots of the by-size table (`Heap::by_size`): one per 16 bytes up to `LOOKUP_MAX`.
pub const SLOTS: usize = LOOKUP_MAX / 16 + 1;

/// The by-size slot of `size` (`size ≤ LOOKUP_MAX`): the class of slot `i` is
/// `class_of(16 * i)`, the class of every size it holds.
#[inline(always)]
pub fn slot_of(size: usize) -> usize {
    (size + 15) >> 4
}

/// The by-size slots whose sizes `class` serves (empty above `LOOKUP_MAX`).
pub fn slots_of(class: usize) -> core::ops::Range<usize> {
    let size = size_of(class);
    if size > LOOKUP_MAX {
        return 0..0;
    }
    let lo = if class == 0 {
        0
    } else {
        size_of(class - 1) / 16 + 1
    };
    lo..size / 16 + 1
}

#[inline]
pub fn size_of(class: usize) -> usize {
    SIZES[class] as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_size_with_bounded_waste() {
        assert_eq!(size_of(NR_CLASSES - 1), SMALL_MAX);
        for c in 1..NR_CLASSES {
            assert!(size_of(c) > size_of(c - 1));
            assert_eq!(size_of(c) % 16, 0);
            assert_eq!(class_of(size_of(c)), c);
        }
        for n in 0..=SMALL_MAX {
            let c = class_of(n);
            let s = size_of(c);
            assert!(s >= n.max(1), "{n} -> {s}");
            assert!(
                c == 0 || size_of(c - 1) < n,
                "{n} not in the smallest class"
            );
            if n <= LOOKUP_MAX {
                assert!(
                    slots_of(c).contains(&slot_of(n)),
                    "{n}: slot outside its class"
                );
            }
            if n > 128 {
                assert!((s - n) * 8 <= n, "waste of {n} -> {s} over 12.5%");
            } else {
                assert!(s - n.max(1) < 16);
            }
        }
    }

    #[test]
    fn by_size_slots_partition_the_table() {
        let mut owner = [usize::MAX; SLOTS];
        for c in 0..NR_CLASSES {
            for i in slots_of(c) {
                assert_eq!(owner[i], usize::MAX, "slot {i} in two classes");
                owner[i] = c;
                assert_eq!(class_of(16 * i), c);
            }
        }
        assert!(owner.iter().all(|&c| c != usize::MAX), "a slot in no class");
    }
}
