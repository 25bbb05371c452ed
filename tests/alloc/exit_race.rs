//! Frees racing with the allocating thread's exit, with `CgMalloc` as the global
//! allocator: in each round a thread allocates small and medium blocks in `/xr`, hands
//! them to two freeing threads, and exits at once, while they free them. A freer may
//! push its block while the owner is still alive and find it gone just after; the
//! owner's exit may empty and recycle the segment the freer is settling. Rounds overlap,
//! so recycled segments are taken again at once by the next round's owner.
//!
//! Afterwards, with every stock drained and every cache reclaimed, `/xr` reads exactly
//! 0 and `nr_charges == nr_uncharges`. A freer left waiting on a recycled segment would
//! hang the test (the harness's timeout catches it).

use crate::support::alloc::*;
use crate::support::rng::Rng;
use cgmalloc::Group;
use std::sync::mpsc;
use std::thread;

const ROUNDS: usize = 400;

struct Block(*mut u8, usize, u64);
// SAFETY: plain memory owned by whoever holds it.
unsafe impl Send for Block {}

#[test]
fn frees_racing_with_owner_exit() {
    let g = Group::create("/xr").unwrap();
    let mut rng = Rng(0x5eed_0e17);
    let mut freers = Vec::new();
    let mut to_freer = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = mpsc::channel::<Vec<Block>>();
        to_freer.push(tx);
        freers.push(thread::spawn(move || {
            let mut bad = 0;
            for batch in rx {
                for Block(p, size, key) in batch {
                    // SAFETY: a live block of `size` bytes handed over by its owner.
                    unsafe {
                        if check(p, size, key).is_some() {
                            bad += 1;
                        }
                        std::alloc::dealloc(p, layout(size));
                    }
                }
            }
            bad
        }));
    }
    let mut owners = Vec::new();
    for round in 0..ROUNDS {
        let seed = rng.next();
        let txs: Vec<_> = to_freer.clone();
        owners.push(thread::spawn(move || {
            g.attach_current_thread().unwrap();
            let mut r = Rng(seed);
            let mut batches: [Vec<Block>; 2] = [Vec::with_capacity(24), Vec::with_capacity(24)];
            for i in 0..48 {
                let size = if r.chance(50) {
                    r.range(16, 2000) as usize
                } else {
                    r.range(33 * KIB as u64, 300 * KIB as u64) as usize
                };
                // SAFETY: non-zero size.
                let p = unsafe { std::alloc::alloc(layout(size)) };
                assert!(!p.is_null());
                let key = r.next();
                // SAFETY: a live block of `size` bytes.
                unsafe { fill(p, size, key) };
                batches[i % 2].push(Block(p, size, key));
            }
            let [a, b] = batches;
            txs[0].send(a).unwrap();
            txs[1].send(b).unwrap();
            // Exit now, while the freers work.
        }));
        if round % 8 == 7 {
            for h in owners.drain(..) {
                h.join().unwrap();
            }
        }
    }
    for h in owners {
        h.join().unwrap();
    }
    drop(to_freer);
    for f in freers {
        assert_eq!(f.join().unwrap(), 0, "corrupted blocks");
    }
    assert_all_returned(&g);
    g.destroy().unwrap();
}
