#![cfg(loom)]
//! Model checks (loom) of the accounting engine's lock-free parts: the hierarchical page
//! counter walk against a lowered `max` (I1, I2, I3, I6), the stock word against
//! `drain_all_stock` (I4, I5), and the dying-group lifecycle against the last uncharge
//! and pins (DESIGN.md "Ownership, free and uncharge").
//!
//! Run with
//! `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --profile loom --test loom`.
//!
//! The library builds under `--cfg loom` only with `loom` as a
//! `[target.'cfg(loom)'.dependencies]` entry (the library itself names `loom::` in
//! `util/sync.rs`) and with `Slot::new` in `memcg/table.rs` building its atomic arrays
//! without `const` blocks.
//!
//! Loom cannot explore a spin lock with more than one waiter (its scheduler keeps
//! switching between yielding waiters until `max_branches`), so no model lets more than
//! two threads take the group table's tree lock at once.
//!
//! Loom regards `SeqCst` loads and stores as `AcqRel` (loom README, "Unsupported
//! features"). Where a check relies on the total order of `SeqCst` operations the test
//! side reads with a read-modify-write (`fetch_add(0)`), which always observes the newest
//! value, so that the model cannot report a store-buffering outcome that real `SeqCst`
//! forbids.

use cgmalloc::internals::memcg::counter::{self, Hierarchy, PageCounter, Pages};
use cgmalloc::internals::memcg::origin::Origin;
use cgmalloc::internals::memcg::path::GroupPath;
use cgmalloc::internals::memcg::stock::{self, CHARGE_BATCH};
use cgmalloc::internals::memcg::table::{GroupTable, DYING, FREE, LIVE, ROOT};
use loom::sync::atomic::{AtomicU64, Ordering};
use loom::sync::Arc;
use loom::thread;

/// Runs `f` under loom with at most `preemptions` forced thread switches per execution
/// (`None`: exhaustive).
fn check<F>(preemptions: Option<usize>, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = loom::model::Builder::new();
    b.preemption_bound = preemptions;
    b.check(f);
}

/// The newest value of `a` in its modification order (see the module comment).
fn newest(a: &AtomicU64) -> u64 {
    a.fetch_add(0, Ordering::SeqCst)
}

// ---------------------------------------------------------------------------------------
// a. The counter walk against a lowered `max`.
// ---------------------------------------------------------------------------------------

/// A root (0) with two children (1, 2).
struct Tree {
    c: [PageCounter; 3],
}

impl Tree {
    fn new() -> Tree {
        Tree {
            c: [PageCounter::new(), PageCounter::new(), PageCounter::new()],
        }
    }
}

impl Hierarchy for Tree {
    fn counter(&self, id: u32) -> &PageCounter {
        &self.c[id as usize]
    }
    fn parent(&self, id: u32) -> Option<u32> {
        match id {
            0 => None,
            _ => Some(0),
        }
    }
}

fn usages(t: &Tree) -> [Pages; 3] {
    [t.c[0].usage(), t.c[1].usage(), t.c[2].usage()]
}

fn watermarks(t: &Tree) -> [Pages; 3] {
    [0, 1, 2].map(|i| t.c[i].watermark.load(Ordering::SeqCst))
}

/// I3 with nothing else running: a refused charge leaves every usage and watermark as it
/// was and counts one `failcnt` at the level that refused, none elsewhere.
#[test]
fn refused_charge_rolls_back_every_level() {
    check(None, || {
        let t = Tree::new();
        t.c[0].max.set(8);
        t.c[1].max.set(6);
        counter::try_charge(&t, 1, 2).unwrap();
        counter::try_charge(&t, 2, 3).unwrap();
        let (u, w) = (usages(&t), watermarks(&t));
        assert_eq!(u, [5, 2, 3]);
        // The root refuses (5 + 4 > 8) after the child accepted (2 + 4 <= 6).
        assert_eq!(counter::try_charge(&t, 1, 4), Err(0));
        assert_eq!(usages(&t), u);
        assert_eq!(watermarks(&t), w);
        // The child refuses (2 + 5 > 6) before the root is touched.
        assert_eq!(counter::try_charge(&t, 1, 5), Err(1));
        assert_eq!(usages(&t), u);
        assert_eq!(watermarks(&t), w);
        let failcnt = [0, 1, 2].map(|i| t.c[i].failcnt.load(Ordering::SeqCst));
        assert_eq!(failcnt, [1, 1, 0]);
        // A forced charge goes past max and raises the peaks.
        counter::charge_force(&t, 2, 4);
        assert_eq!(usages(&t), [9, 2, 7]);
        assert_eq!(watermarks(&t)[0], 9);
        assert_eq!(t.c[0].margin(), 0, "the root is past its max");
    });
}

/// Two siblings charge 2 pages each under a root whose `max` another thread lowers from 3
/// to 1. I2: at most one charge succeeds (two would have put 4 pages under a limit of 3),
/// and one that succeeds linearised before the new limit, so the setter, reading usage
/// after its store, sees it. I3: a refused charge leaves its child at 0. I1 at the end.
#[test]
fn charge_vs_lowering_max() {
    check(Some(3), || {
        let t = Arc::new(Tree::new());
        t.c[0].max.set(3);
        let charger = |id: u32| {
            let t = t.clone();
            thread::spawn(move || {
                let r = counter::try_charge(&*t, id, 2);
                if r.is_ok() {
                    // No uncharge anywhere: the pages stay. The root may briefly read
                    // above 3 while the other charge rolls back (as in the kernel), but
                    // by no more than that charge.
                    assert!(t.c[id as usize].usage() >= 2);
                    assert!(t.c[0].usage() <= 3 + 2);
                }
                r
            })
        };
        let a = charger(1);
        let b = charger(2);
        let setter = {
            let t = t.clone();
            thread::spawn(move || {
                t.c[0].max.set(1);
                newest(&t.c[0].usage)
            })
        };
        let ra = a.join().unwrap();
        let rb = b.join().unwrap();
        let seen_by_setter = setter.join().unwrap();

        let ok = [ra, rb].iter().filter(|r| r.is_ok()).count() as u64;
        assert!(ok <= 1, "two charges of 2 pages under max 3: {ra:?} {rb:?}");
        for r in [ra, rb] {
            if let Err(level) = r {
                assert_eq!(level, 0, "only the root has a limit");
            }
        }
        let u = usages(&t);
        // I1: the root owns nothing itself.
        assert_eq!(u[0], u[1] + u[2]);
        assert_eq!(u[0], 2 * ok);
        assert_eq!(u[1], if ra.is_ok() { 2 } else { 0 });
        assert_eq!(u[2], if rb.is_ok() { 2 } else { 0 });
        // I2 at the update: over the new limit only by a charge that came before it.
        assert!(
            u[0] <= 1 || seen_by_setter >= u[0],
            "usage {} over the new max 1 but the setter saw {}",
            u[0],
            seen_by_setter
        );
        // The refusals counted where they happened; nothing counted when all succeeded.
        assert_eq!(t.c[0].failcnt.load(Ordering::SeqCst), 2 - ok);
        assert_eq!(t.c[1].failcnt.load(Ordering::SeqCst), 0);
        // I6 and no peak from refused charges at the root: every root peak is a
        // successful `new`, which was <= 3.
        let w = watermarks(&t);
        assert!(w[0] >= u[0] && w[0] <= 3, "root peak {}", w[0]);
        assert_eq!(w[0], u[0]);
        assert_eq!(w[1], u[1]);
        assert_eq!(w[2], u[2]);
    });
}

/// Two charges to the same child and an uncharge of a page charged before, against a root
/// limit of 3 with 1 page in use: exactly one charge fits at any moment (the first to
/// reach the root), never both, and the counters end consistent (I1, I3).
#[test]
fn concurrent_charges_and_uncharge_respect_max() {
    check(Some(3), || {
        let t = Arc::new(GroupTable::<4>::new());
        let a = create(&t, b"/a");
        t.counter(ROOT).max.set(3);
        counter::try_charge(&*t, a, 1).unwrap();
        let spawn_charge = || {
            let t = t.clone();
            thread::spawn(move || counter::try_charge(&*t, a, 2).is_ok())
        };
        let c1 = spawn_charge();
        let c2 = spawn_charge();
        let un = {
            let t = t.clone();
            thread::spawn(move || t.uncharge(a, 1))
        };
        let ok1 = c1.join().unwrap();
        let ok2 = c2.join().unwrap();
        un.join().unwrap();
        assert!(
            ok1 ^ ok2,
            "exactly one of two 2-page charges fits: {ok1} {ok2}"
        );
        assert_eq!(t.counter(a).usage(), 2);
        assert_eq!(t.counter(ROOT).usage(), 2);
        assert!(t.counter(ROOT).watermark.load(Ordering::SeqCst) <= 3);
        assert_eq!(t.counter(ROOT).failcnt.load(Ordering::SeqCst), 1);
    });
}

// ---------------------------------------------------------------------------------------
// b. Stocks against drain_all_stock.
// ---------------------------------------------------------------------------------------

/// Pages charged to a group before a stock model starts, so that a double uncharge shows
/// as a wrong usage instead of a fatal underflow.
const BASE: Pages = 64;

fn create<const N: usize>(t: &GroupTable<N>, path: &[u8]) -> u32 {
    let h = create_handle(t, path);
    (h & 0xffff) as u32
}

fn create_handle<const N: usize>(t: &GroupTable<N>, path: &[u8]) -> u64 {
    t.create(&GroupPath::parse(path).unwrap()).unwrap()
}

fn stock_pages(w: &AtomicU64) -> Pages {
    stock::unpack(w.load(Ordering::SeqCst)).1
}

/// The owner charges a batch for a 1-page request and keeps the surplus (`done_restock`),
/// takes a second page from the stock (or from the counter if it was drained), frees one
/// page through the stock (`put_back`), then refills past `CHARGE_BATCH`; another thread
/// drains the word meanwhile. I4: the stock never holds more than 32 pages; I5: after a
/// final drain the group holds exactly what the owner still uses.
#[test]
fn refill_consume_put_back_vs_drain() {
    check(Some(3), || {
        let t = Arc::new(GroupTable::<4>::new());
        let a = create(&t, b"/a");
        counter::try_charge(&*t, a, BASE).unwrap();
        let w = Arc::new(AtomicU64::new(0));
        let owner = {
            let (t, w) = (t.clone(), w.clone());
            thread::spawn(move || {
                let mut held = 0;
                // Request of 1 page with an empty stock: charge a batch, stock the rest.
                counter::try_charge(&*t, a, CHARGE_BATCH).unwrap();
                stock::refill(&w, &*t, a, CHARGE_BATCH - 1);
                held += 1;
                assert!(stock_pages(&w) <= CHARGE_BATCH);
                // Second page: from the stock unless it was drained.
                if !stock::consume(&w, a, 1) {
                    counter::try_charge(&*t, a, 1).unwrap();
                }
                held += 1;
                // Free one page through the stock.
                stock::put_back(&w, &*t, a, 1, &Origin::plain("test"));
                held -= 1;
                // A 5-page charge whose surplus overflows the stock.
                counter::try_charge(&*t, a, 5).unwrap();
                stock::refill(&w, &*t, a, 5);
                assert!(stock_pages(&w) <= CHARGE_BATCH);
                held
            })
        };
        let drainer = {
            let (t, w) = (t.clone(), w.clone());
            thread::spawn(move || stock::drain(&w, &*t))
        };
        let held = owner.join().unwrap();
        let drained = drainer.join().unwrap();
        assert!(drained <= CHARGE_BATCH);
        let rest = stock::drain(&w, &*t);
        assert!(rest <= CHARGE_BATCH);
        assert_eq!(stock_pages(&w), 0);
        assert_eq!(stock::drain(&w, &*t), 0, "a drained stock drains nothing");
        assert_eq!(
            t.counter(a).usage(),
            BASE + held,
            "pages lost or uncharged twice"
        );
        assert_eq!(t.counter(ROOT).usage(), BASE + held);
    });
}

/// Two threads drain the same word (two `drain_all_stock` calls) while the owner refills
/// and consumes: every stocked page is uncharged exactly once.
#[test]
fn two_drainers_vs_owner() {
    check(Some(2), || {
        let t = Arc::new(GroupTable::<4>::new());
        let a = create(&t, b"/a");
        counter::try_charge(&*t, a, BASE).unwrap();
        let w = Arc::new(AtomicU64::new(0));
        let owner = {
            let (t, w) = (t.clone(), w.clone());
            thread::spawn(move || {
                counter::try_charge(&*t, a, CHARGE_BATCH).unwrap();
                stock::refill(&w, &*t, a, CHARGE_BATCH - 2);
                let hit = stock::consume(&w, a, 3);
                if !hit {
                    counter::try_charge(&*t, a, 3).unwrap();
                }
                (2 + 3, hit)
            })
        };
        let drain = || {
            let (t, w) = (t.clone(), w.clone());
            thread::spawn(move || stock::drain(&w, &*t))
        };
        let d1 = drain();
        let d2 = drain();
        let (held, hit) = owner.join().unwrap();
        let drained = d1.join().unwrap() + d2.join().unwrap() + stock::drain(&w, &*t);
        // Pages in: 30; out: 3 if the owner consumed them, the rest drained once.
        assert_eq!(drained, CHARGE_BATCH - 2 - if hit { 3 } else { 0 });
        assert_eq!(t.counter(a).usage(), BASE + held);
        assert_eq!(t.counter(ROOT).usage(), BASE + held);
    });
}

/// A refill for group `b` displaces a stock of group `a` (draining it) while another
/// thread drains the word: `a`'s stocked pages go back to `a`, `b`'s stay charged to `b`
/// until drained, and nothing is uncharged from the wrong group (I7).
#[test]
fn refill_other_group_displaces_old_vs_drain() {
    check(Some(3), || {
        let t = Arc::new(GroupTable::<4>::new());
        let a = create(&t, b"/a");
        let b = create(&t, b"/b");
        counter::try_charge(&*t, a, BASE).unwrap();
        counter::try_charge(&*t, b, BASE).unwrap();
        let w = Arc::new(AtomicU64::new(0));
        let owner = {
            let (t, w) = (t.clone(), w.clone());
            thread::spawn(move || {
                counter::try_charge(&*t, a, CHARGE_BATCH).unwrap();
                stock::refill(&w, &*t, a, CHARGE_BATCH - 1);
                counter::try_charge(&*t, b, CHARGE_BATCH).unwrap();
                stock::refill(&w, &*t, b, CHARGE_BATCH - 2);
                let (g, pages) = stock::unpack(w.load(Ordering::SeqCst));
                // Only the owner refills, so the word names b from now on, or was drained.
                assert!(g == Some(b) || pages == 0, "{g:?} {pages}");
                assert!(pages <= CHARGE_BATCH - 2);
            })
        };
        let drainer = {
            let (t, w) = (t.clone(), w.clone());
            thread::spawn(move || stock::drain(&w, &*t))
        };
        owner.join().unwrap();
        drainer.join().unwrap();
        stock::drain(&w, &*t);
        assert_eq!(t.counter(a).usage(), BASE + 1);
        assert_eq!(t.counter(b).usage(), BASE + 2);
        assert_eq!(t.counter(ROOT).usage(), 2 * BASE + 3);
    });
}

// ---------------------------------------------------------------------------------------
// c. Destroy against the last uncharge, and pins.
// ---------------------------------------------------------------------------------------

/// After every thread is done: the slot is free, its handle dead, nothing charged.
fn assert_freed<const N: usize>(t: &GroupTable<N>, id: u32, handle: u64) {
    assert_eq!(
        t.state(id),
        FREE,
        "slot {id} leaked in state {} with usage {}",
        t.state(id),
        t.counter(id).usage()
    );
    assert!(t.pin(handle, true).is_err());
    assert_eq!(t.count_descendants(ROOT), (0, 0));
}

/// Uncharges `nr` pages of a group that must still hold them: the slot cannot be free.
fn uncharge_held<const N: usize>(t: &GroupTable<N>, id: u32, nr: Pages) {
    let st = t.state(id);
    assert_ne!(st, FREE, "slot {id} freed while charged");
    t.uncharge(id, nr);
}

/// Destroys and frees as `cgm_group_destroy` does (stocks are empty here).
fn destroy<const N: usize>(t: &GroupTable<N>, handle: u64) {
    let (id, serial) = t.destroy(handle).unwrap();
    t.maybe_free(id, serial);
    let st = t.state(id);
    let usage = t.counter(id).usage();
    assert!(st == DYING || st == FREE, "state {st} after destroy");
    assert!(st != FREE || usage == 0, "freed with {usage} pages charged");
}

/// One thread uncharges the last pages of a group while another destroys it: whichever
/// comes last frees the slot, exactly once.
#[test]
fn destroy_vs_last_uncharge() {
    check(None, || {
        let t = Arc::new(GroupTable::<4>::new());
        let h = create_handle(&t, b"/a");
        let a = (h & 0xffff) as u32;
        counter::try_charge(&*t, a, 2).unwrap();
        let un = {
            let t = t.clone();
            thread::spawn(move || uncharge_held(&t, a, 2))
        };
        let de = {
            let t = t.clone();
            thread::spawn(move || destroy(&t, h))
        };
        un.join().unwrap();
        de.join().unwrap();
        assert_freed(&t, a, h);
        assert_eq!(t.counter(ROOT).usage(), 0);
    });
}

/// The last pages go back from two threads while a third destroys the group: only the
/// uncharge that empties the counter may free it, and the slot is not freed before.
#[test]
fn destroy_vs_two_uncharges() {
    check(Some(2), || {
        let t = Arc::new(GroupTable::<4>::new());
        let h = create_handle(&t, b"/a");
        let a = (h & 0xffff) as u32;
        counter::try_charge(&*t, a, 2).unwrap();
        let un = || {
            let t = t.clone();
            thread::spawn(move || uncharge_held(&t, a, 1))
        };
        let u1 = un();
        let u2 = un();
        let de = {
            let t = t.clone();
            thread::spawn(move || destroy(&t, h))
        };
        u1.join().unwrap();
        u2.join().unwrap();
        de.join().unwrap();
        assert_freed(&t, a, h);
    });
}

/// A dying parent and its child: the child's last uncharge frees the child and then the
/// parent, whichever order the destroys and the uncharge take.
#[test]
fn destroy_parent_and_child_vs_last_uncharge() {
    check(Some(3), || {
        let t = Arc::new(GroupTable::<4>::new());
        let hp = create_handle(&t, b"/p");
        let hc = create_handle(&t, b"/p/c");
        let (p, c) = ((hp & 0xffff) as u32, (hc & 0xffff) as u32);
        counter::try_charge(&*t, c, 2).unwrap();
        let un = {
            let t = t.clone();
            thread::spawn(move || uncharge_held(&t, c, 2))
        };
        let de = {
            let t = t.clone();
            thread::spawn(move || {
                destroy(&t, hc);
                destroy(&t, hp);
            })
        };
        un.join().unwrap();
        de.join().unwrap();
        assert_freed(&t, c, hc);
        assert_freed(&t, p, hp);
    });
}

/// A pinned child under a parent that is destroyed with it: the child's last uncharge
/// cannot free the child (pinned) nor the parent (it has a child), so the unpin must free
/// the child and then walk up to free the dying parent.
#[test]
fn unpin_frees_child_then_dying_parent() {
    check(Some(3), || {
        let t = Arc::new(GroupTable::<4>::new());
        let hp = create_handle(&t, b"/p");
        let hc = create_handle(&t, b"/p/c");
        let (p, c) = ((hp & 0xffff) as u32, (hc & 0xffff) as u32);
        counter::try_charge(&*t, c, 1).unwrap();
        let user = {
            let t = t.clone();
            thread::spawn(move || {
                let pin = t.pin(hc, true).expect("charged group vanished");
                uncharge_held(&t, c, 1);
                assert_ne!(t.state(c), FREE, "pinned slot freed");
                assert_ne!(t.state(p), FREE, "parent of a pinned child freed");
                drop(pin);
            })
        };
        let de = {
            let t = t.clone();
            thread::spawn(move || {
                destroy(&t, hc);
                destroy(&t, hp);
            })
        };
        user.join().unwrap();
        de.join().unwrap();
        assert_freed(&t, c, hc);
        assert_freed(&t, p, hp);
    });
}

/// A thread pins the group, uncharges its last pages and unpins, while another destroys
/// it: the slot stays allocated while pinned, and whoever comes last (the unpin or the
/// destroy) frees it.
#[test]
fn pin_vs_destroy_and_last_uncharge() {
    check(Some(3), || {
        let t = Arc::new(GroupTable::<4>::new());
        let h = create_handle(&t, b"/a");
        let a = (h & 0xffff) as u32;
        counter::try_charge(&*t, a, 2).unwrap();
        let user = {
            let t = t.clone();
            thread::spawn(move || {
                // Charged, so not freed: the pin succeeds even on a dying group.
                let pin = t.pin(h, true).expect("charged group vanished");
                assert_eq!(pin.id, a);
                uncharge_held(&t, a, 2);
                assert_ne!(t.state(a), FREE, "pinned slot freed");
                drop(pin);
            })
        };
        let de = {
            let t = t.clone();
            thread::spawn(move || destroy(&t, h))
        };
        user.join().unwrap();
        de.join().unwrap();
        assert_freed(&t, a, h);
    });
}

/// A pin on an empty group against its destruction: a pin taken before the slot is freed
/// keeps it allocated until dropped, and the unpin or the destroy frees it.
#[test]
fn pin_vs_destroy_empty_group() {
    check(None, || {
        let t = Arc::new(GroupTable::<4>::new());
        let h = create_handle(&t, b"/a");
        let a = (h & 0xffff) as u32;
        let user = {
            let t = t.clone();
            thread::spawn(move || {
                if let Ok(pin) = t.pin(h, true) {
                    // Live, being destroyed, or dying, but not free.
                    assert_ne!(t.state(a), FREE, "pinned slot freed");
                    drop(pin);
                }
            })
        };
        let de = {
            let t = t.clone();
            thread::spawn(move || destroy(&t, h))
        };
        user.join().unwrap();
        de.join().unwrap();
        assert_freed(&t, a, h);
    });
}

/// Pinning a live group, destroying it, and unpinning: the handle stops working for new
/// live pins at once, the dying group still pins with `allow_dying`, and the slot is
/// freed by the last unpin once empty (sequential checks of the pin protocol).
#[test]
fn pin_lifecycle_sequential() {
    check(None, || {
        let t = GroupTable::<4>::new();
        let h = create_handle(&t, b"/a");
        let a = (h & 0xffff) as u32;
        counter::try_charge(&t, a, 1).unwrap();
        let p1 = t.pin(h, false).unwrap();
        t.destroy(h).unwrap();
        assert_eq!(t.state(a), DYING);
        assert!(t.pin(h, false).is_err());
        let p2 = t.pin(h, true).unwrap();
        t.uncharge(a, 1);
        assert_eq!(t.state(a), DYING, "freed while pinned");
        drop(p1);
        assert_eq!(t.state(a), DYING, "freed while pinned");
        drop(p2);
        assert_freed(&t, a, h);
        // A new group of the same name gets a new handle; the old one stays dead.
        let h2 = create_handle(&t, b"/a");
        assert_ne!(h2, h);
        assert!(t.pin(h, true).is_err());
        assert!(t.pin(h2, false).is_ok());
    });
}

/// A free by a thread whose stock caches the group races with the group's destruction
/// (`charge::uncharge` checks `state == LIVE`, then `put_back`s into the stock;
/// `control::destroy` marks the group dying, drains every stock, then `maybe_free`s):
/// the page can land in the stock after the drain, and the dying group then stays
/// allocated, its ancestors charged, until that thread's stock happens to be drained.
/// A page freed through a stock while the group is destroyed: `put_back` re-checks the
/// state, so the group never stays dying with pages parked in a stock.
#[test]
fn free_through_stock_vs_destroy() {
    check(None, || {
        let t = Arc::new(GroupTable::<4>::new());
        let h = create_handle(&t, b"/a");
        let a = (h & 0xffff) as u32;
        let w = Arc::new(AtomicU64::new(0));
        // The freeing thread's stock names `a` with no pages; one page of `a` is in use.
        counter::try_charge(&*t, a, CHARGE_BATCH).unwrap();
        stock::refill(&w, &*t, a, CHARGE_BATCH - 1);
        assert!(stock::consume(&w, a, CHARGE_BATCH - 1));
        t.uncharge(a, CHARGE_BATCH - 1);
        let freer = {
            let (t, w) = (t.clone(), w.clone());
            thread::spawn(move || {
                // `charge::uncharge(a, 1)`.
                if t.state(a) == LIVE {
                    stock::put_back(&w, &*t, a, 1, &Origin::plain("test"));
                } else {
                    t.uncharge(a, 1);
                }
            })
        };
        // `control::destroy`.
        let (id, serial) = t.destroy(h).unwrap();
        stock::drain(&w, &*t);
        t.maybe_free(id, serial);
        freer.join().unwrap();
        assert_eq!(
            t.state(a),
            FREE,
            "dying group kept by {} stocked pages",
            stock_pages(&w)
        );
    });
}
