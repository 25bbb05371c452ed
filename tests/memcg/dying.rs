//! Destroyed groups: a group destroyed while charges remain is dying, invisible to
//! `open` and the interface files, until its last uncharge frees it (its statistics
//! folded into its parent's); one with no charges goes at once, its stocks drained; and
//! the destroys that are refused.
//!
//! Each test uses its own groups; run under nextest, each test has its own process.

use cgmalloc::{drain_stocks, Group};

const PAGE: u64 = 4096;

#[test]
fn dying_group_lives_until_its_last_uncharge() {
    let root = Group::root();
    let g = Group::create("/D").unwrap();
    let c1 = g.try_charge(5 * PAGE).unwrap();
    let c2 = g.try_charge(40 * PAGE).unwrap();
    g.destroy().unwrap();
    assert_eq!(Group::open("/D").unwrap_err().errno(), libc::ENOENT);
    assert_eq!(g.read("memory.current").unwrap_err().errno(), libc::ENOENT);
    assert_eq!(g.set_max(0).unwrap_err().errno(), libc::ENOENT);
    assert!(root
        .read("cgroup.stat")
        .unwrap()
        .contains("nr_dying_descendants 1\n"));
    // The path can be reused at once, with a new handle.
    let again = Group::create("/D").unwrap();
    assert_ne!(again, g);
    drop(c1);
    assert!(root
        .read("cgroup.stat")
        .unwrap()
        .contains("nr_dying_descendants 1\n"));
    let before = root.stat().unwrap().current;
    drop(c2); // the last charge: the dying group is freed
    drain_stocks();
    assert!(root
        .read("cgroup.stat")
        .unwrap()
        .contains("nr_dying_descendants 0\n"));
    assert!(root.stat().unwrap().current <= before - 40 * PAGE);
    assert_eq!(g.stat().unwrap_err().errno(), libc::ENOENT);
    // Statistics of the freed group are folded into its parent.
    let stat = root.read("memory.stat").unwrap();
    assert!(stat.contains("nr_uncharges 2\n"), "{stat}");
    again.destroy().unwrap();
}

#[test]
fn destroy_with_no_charges_frees_at_once_and_stocks_are_drained() {
    let g = Group::create("/S").unwrap();
    {
        let _in = g.enter().unwrap();
        let c = g.try_charge(PAGE).unwrap(); // leaves 31 pages in this thread's stock
        drop(c);
        assert!(g.stat().unwrap().stock > 0);
    }
    g.destroy().unwrap();
    let cs = Group::root().read("cgroup.stat").unwrap();
    assert!(cs.contains("nr_dying_descendants 0\n"), "{cs}");
}

#[test]
fn destroy_refusals() {
    let p = Group::create("/busy").unwrap();
    let k = Group::create("/busy/k").unwrap();
    assert_eq!(p.destroy().unwrap_err().errno(), libc::EBUSY);
    let guard = k.enter().unwrap();
    assert_eq!(k.destroy().unwrap_err().errno(), libc::EBUSY);
    assert_eq!(Group::current(), k);
    drop(guard);
    assert_eq!(Group::current(), Group::root());
    k.destroy().unwrap();
    p.destroy().unwrap();
    assert_eq!(Group::root().destroy().unwrap_err().errno(), libc::EPERM);
}
