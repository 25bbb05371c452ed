//! A large block that no cached mapping fits takes the resident pages of the thread's
//! cached mappings (moved with `mremap`, not faulted in): the block is resident the
//! moment it is handed out, the donor keeps the rest, charges follow the pages from the
//! donor's group to the block's, and a zeroed block is zeroed all the same. With
//! `CgMalloc` as the global allocator; every test ends with its groups at exactly 0.

use crate::support::alloc::*;
use crate::support::rng::Rng;
use cgmalloc::Group;
use std::alloc::{alloc, alloc_zeroed, dealloc};
use std::thread;

const M: u64 = MIB as u64;

/// A live block of `size` bytes holding the pattern of `key`.
fn block(size: usize, key: u64) -> *mut u8 {
    // SAFETY: non-zero size.
    let p = std::hint::black_box(unsafe { alloc(layout(size)) });
    assert!(!p.is_null());
    // SAFETY: a live block of `size` bytes; every page written, so all are resident.
    unsafe {
        p.write_bytes(0x5a, size);
        fill(p, size, key);
    }
    p
}

fn free(p: *mut u8, size: usize) {
    // SAFETY: a live block of this layout.
    unsafe { dealloc(std::hint::black_box(p), layout(size)) };
}

/// Leaves a mapping of `size` bytes, every page resident, in the thread's cache; its
/// address (the freed block's).
fn cache_one(size: usize) -> *mut u8 {
    let p = block(size, 1);
    free(p, size);
    p
}

fn pages(bytes: usize) -> usize {
    bytes / PAGE as usize
}

/// Runs `f` on a new thread attached to `g`; once it has exited, `g` holds nothing.
fn in_group(g: &Group, f: impl FnOnce(&Group) + Send + 'static) {
    let h = *g;
    thread::spawn(move || {
        h.attach_current_thread().unwrap();
        f(&h);
    })
    .join()
    .unwrap();
    assert_all_returned(g);
}

#[test]
fn a_new_block_takes_a_cached_mappings_pages() {
    let g = Group::create("/harvest").unwrap();
    in_group(&g, |g| {
        let donor = cache_one(12 * MIB);
        assert_eq!(stat_key(g, "cached"), 12 * M);

        // 12 MiB is more than twice 3 MiB: no cached mapping serves the block, which
        // takes 3 MiB of the cached one's pages instead of faulting its own.
        let size = 3 * MIB;
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout(size)) };
        assert!(!p.is_null());
        assert_eq!(
            resident(p, size),
            pages(size),
            "the block was not harvested"
        );
        // SAFETY: the donor's mapping stays mapped while cached.
        unsafe {
            assert_eq!(resident(donor, 9 * MIB), pages(9 * MIB));
            assert_eq!(
                resident(donor.add(9 * MIB), size),
                0,
                "donor tail still resident"
            );
        }
        assert_eq!(stat_key(g, "large"), 12 * M);
        assert_eq!(stat_key(g, "cached"), 9 * M);
        assert_eq!(stat_key(g, "allocated"), 3 * M);
        // SAFETY: a live block of `size` bytes.
        unsafe {
            fill(p, size, 7);
            assert_eq!(check(p, size, 7), None);
        }

        // Again, from what is left: 9 MiB is more than twice 4 MiB.
        let q = block(4 * MIB, 8);
        assert_eq!(stat_key(g, "large"), 12 * M);
        assert_eq!(stat_key(g, "cached"), 5 * M);
        assert_eq!(stat_key(g, "allocated"), 7 * M);
        // SAFETY: both blocks are live.
        unsafe {
            assert_eq!(check(p, size, 7), None);
            assert_eq!(check(q, 4 * MIB, 8), None);
        }
        free(p, size);
        free(q, 4 * MIB);
    });
}

#[test]
fn a_shorter_cached_mapping_grows_with_anothers_pages() {
    let g = Group::create("/harvest-grow").unwrap();
    in_group(&g, |g| {
        let (small, big) = (3 * MIB, 12 * MIB);
        let a = block(small, 1);
        let b = block(big, 2);
        free(a, small);
        free(b, big);
        assert_eq!(stat_key(g, "cached"), 15 * M);

        // The 3 MiB mapping serves 5 MiB (its reservation holds it): the 2 MiB it grows
        // by come from the 12 MiB one, which is too long to serve 5 MiB itself.
        let size = 5 * MIB;
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout(size)) };
        assert_eq!(p, a, "the shorter mapping was not reused");
        assert_eq!(resident(p, size), pages(size), "the growth was faulted in");
        // SAFETY: the donor's mapping stays mapped while cached.
        unsafe {
            assert_eq!(resident(b, 10 * MIB), pages(10 * MIB));
            assert_eq!(resident(b.add(10 * MIB), 2 * MIB), 0);
        }
        assert_eq!(stat_key(g, "large"), 15 * M);
        assert_eq!(stat_key(g, "cached"), 10 * M);
        assert_eq!(stat_key(g, "allocated"), 5 * M);
        // SAFETY: a live block of `size` bytes.
        unsafe {
            fill(p, size, 3);
            assert_eq!(check(p, size, 3), None);
        }
        free(p, size);
    });
}

#[test]
fn pages_change_group_with_their_charge() {
    let a = Group::create("/harvest-a").unwrap();
    let b = Group::create("/harvest-b").unwrap();
    let (a2, b2) = (a, b);
    thread::spawn(move || {
        a2.attach_current_thread().unwrap();
        cache_one(16 * MIB);
        assert_eq!(stat_key(&a2, "cached"), 16 * M);

        // The same thread in another group: its cache still holds `a`'s mapping.
        b2.attach_current_thread().unwrap();
        let size = 6 * MIB;
        let p = block(size, 2);
        assert_eq!(stat_key(&a2, "large"), 10 * M);
        assert_eq!(stat_key(&a2, "cached"), 10 * M);
        assert_eq!(stat_key(&b2, "large"), 6 * M);
        assert_eq!(stat_key(&b2, "allocated"), 6 * M);
        assert_eq!(stat_key(&b2, "cached"), 0);
        // SAFETY: a live block of `size` bytes.
        assert_eq!(unsafe { check(p, size, 2) }, None);
        free(p, size);
    })
    .join()
    .unwrap();
    assert_all_returned(&a);
    assert_all_returned(&b);
}

#[test]
fn a_zeroed_block_over_harvested_pages_reads_zeros() {
    let g = Group::create("/harvest-zero").unwrap();
    in_group(&g, |g| {
        cache_one(12 * MIB);
        let size = 5 * MIB;
        // SAFETY: non-zero size.
        let p = unsafe { alloc_zeroed(layout(size)) };
        assert!(!p.is_null());
        assert_eq!(stat_key(g, "cached"), 7 * M, "the block was not harvested");
        // SAFETY: a live block of `size` bytes.
        let bytes = unsafe { std::slice::from_raw_parts(p, size) };
        assert!(bytes.iter().all(|&c| c == 0), "harvested pages not zeroed");
        free(p, size);
    });
}

#[test]
fn a_harvested_block_grows_past_its_reservation_by_copy() {
    let g = Group::create("/harvest-realloc").unwrap();
    in_group(&g, |g| {
        cache_one(12 * MIB);
        let mut size = 2 * MIB;
        let mut p = block(size, 5);
        assert_eq!(stat_key(g, "cached"), 10 * M, "the block was not harvested");
        // Within its reservation (four times its size), then far past it: a mapping of
        // several areas is copied, not moved by `mremap`.
        for new in [6 * MIB, 40 * MIB] {
            // SAFETY: a live block of `size` bytes.
            p = unsafe { std::alloc::realloc(p, layout(size), new) };
            assert!(!p.is_null());
            // SAFETY: the grown block keeps its first `size` bytes and is writable.
            unsafe {
                assert_eq!(check_upto(p, 2 * MIB, 2 * MIB, 5), None);
                p.add(new - 1).write(1);
            }
            size = new;
            assert_eq!(stat_key(g, "allocated"), new as u64);
        }
        free(p, size);
    });
}

/// Sixteen live blocks of 1–32 MiB replaced at random (the shape of `malloc_large`), in
/// two groups, contents checked; everything returned at the end.
#[test]
fn random_large_churn_keeps_contents_and_charges() {
    let groups = [
        Group::create("/harvest-churn-a").unwrap(),
        Group::create("/harvest-churn-b").unwrap(),
    ];
    let gs = groups;
    thread::spawn(move || {
        let mut rng = Rng(42);
        let mut live: Vec<(usize, usize, u64)> = Vec::new();
        for step in 0..400u64 {
            gs[(step / 50 % 2) as usize]
                .attach_current_thread()
                .unwrap();
            if live.len() == 16 {
                let (p, size, key) = live.swap_remove(rng.below(16) as usize);
                // SAFETY: a live block holding the pattern of `key`.
                assert_eq!(unsafe { check(p as *const u8, size, key) }, None);
                free(p as *mut u8, size);
            }
            let size = rng.log_range(MIB as u64 + 1, 32 * M) as usize;
            // SAFETY: non-zero size.
            let p = unsafe { alloc(layout(size)) };
            assert!(!p.is_null());
            // SAFETY: a live block of `size` bytes.
            unsafe { fill(p, size, step) };
            live.push((p as usize, size, step));
        }
        for (p, size, key) in live {
            // SAFETY: as above.
            assert_eq!(unsafe { check(p as *const u8, size, key) }, None);
            free(p as *mut u8, size);
        }
    })
    .join()
    .unwrap();
    for g in &groups {
        assert_all_returned(g);
    }
}
