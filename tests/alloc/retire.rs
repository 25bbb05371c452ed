//! Retired thread states, with `CgMalloc` as the global allocator: an exiting thread's
//! state is kept whole for the next thread (`alloc::retired`), which takes over its
//! segments and heaps; a state left retired past its delay has its segments abandoned,
//! as do `malloc_trim` and `memory.reclaim`; a fork child recycles the states its parent
//! had retired. Blocks of every band, in limited groups and the root; every test ends
//! with its groups at exactly 0.

use crate::support::alloc::*;
use cgmalloc::internals::{expire_retired, retired_states};
use cgmalloc::Group;
use std::alloc::{alloc, dealloc};
use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

/// One size from every band: small classes, a medium block, a large mapping.
const SIZES: [usize; 7] = [16, 100, 1000, 8000, 40 * KIB, 300 * KIB, 3 * MIB];

/// A live block of `size` bytes, filled with a pattern of `key`.
struct Block {
    p: usize,
    size: usize,
    key: u64,
}

impl Block {
    fn new(size: usize, key: u64) -> Block {
        // SAFETY: non-zero size.
        let p = unsafe { alloc(layout(size)) };
        assert!(!p.is_null(), "alloc({size})");
        // SAFETY: a live block of `size` bytes.
        unsafe { fill(p, size, key) };
        Block {
            p: p as usize,
            size,
            key,
        }
    }

    /// Checks the pattern and frees the block.
    fn check_and_free(self) {
        let p = self.p as *mut u8;
        // SAFETY: a live block of `size` bytes.
        let bad = unsafe { check(p, self.size, self.key) };
        assert_eq!(bad, None, "block {p:?} of {}", self.size);
        // SAFETY: a live block of this layout.
        unsafe { dealloc(p, layout(self.size)) };
    }
}

/// In a thread attached to `g` (the root if `None`): allocates `n` blocks of every size
/// of `SIZES`, frees every other one, and exits; returns the blocks left live.
fn leave_blocks(g: Option<Group>, n: usize, key: u64) -> Vec<Block> {
    thread::spawn(move || leave_blocks_here(g, n, key))
        .join()
        .unwrap()
}

/// `leave_blocks` in the calling thread (which attaches to `g`).
fn leave_blocks_here(g: Option<Group>, n: usize, key: u64) -> Vec<Block> {
    if let Some(g) = g {
        g.attach_current_thread().unwrap();
    }
    let mut live = Vec::new();
    for (i, &size) in SIZES.iter().cycle().take(n * SIZES.len()).enumerate() {
        let b = Block::new(size, key + i as u64);
        if i % 2 == 0 {
            b.check_and_free();
        } else {
            live.push(b);
        }
    }
    live
}

/// Runs `f` in a thread made with `pthread_create`, which calls the allocator for nothing
/// before `f` runs (a std thread's start registers its thread-local destructors), as a C
/// program's threads; `f` must not panic (that aborts the test).
fn in_bare_thread(mut f: impl FnMut() + Send) {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` points to the `&mut dyn FnMut()` below, alive until the join.
        let f = unsafe { &mut *(arg as *mut &mut dyn FnMut()) };
        f();
        std::ptr::null_mut()
    }
    let mut f: &mut dyn FnMut() = &mut f;
    let arg = &mut f as *mut &mut dyn FnMut() as *mut libc::c_void;
    let mut t: libc::pthread_t = 0;
    // SAFETY: `start` gets a pointer to `f`, which outlives the thread (joined below).
    let r = unsafe { libc::pthread_create(&mut t, std::ptr::null(), start, arg) };
    assert_eq!(r, 0, "pthread_create");
    // SAFETY: the thread created above, joined once.
    assert_eq!(unsafe { libc::pthread_join(t, std::ptr::null_mut()) }, 0);
}

/// The segments of the small blocks among `blocks`.
fn small_segments(blocks: &[Block]) -> BTreeSet<usize> {
    blocks
        .iter()
        .filter(|b| b.size <= 8000)
        .map(|b| segment_of(b.p))
        .collect()
}

/// The next thread (attached to `to`) takes over the state; of the same group, its
/// first small block lies in the exited thread's segments. It frees the exited thread's
/// blocks (contents intact) and leaves its own; the groups return to 0 once those are
/// freed.
fn taken_over_by_the_next_thread(from: Option<Group>, to: Option<Group>, tag: &str) {
    let live = leave_blocks(from, 8, 1);
    assert_eq!(
        retired_states(),
        1,
        "{tag}: the exited thread's state is retired"
    );
    let segments = small_segments(&live);
    let (p, left, mine) = thread::spawn(move || {
        if let Some(g) = to {
            g.attach_current_thread().unwrap();
        }
        let first = Block::new(100, 99);
        let p = first.p;
        let left = retired_states();
        for b in live {
            b.check_and_free();
        }
        let mine: Vec<Block> = SIZES.iter().map(|&s| Block::new(s, s as u64)).collect();
        first.check_and_free();
        (p, left, mine)
    })
    .join()
    .unwrap();
    assert_eq!(
        left, 0,
        "{tag}: the next thread took the retired state over"
    );
    if from == to {
        assert!(
            segments.contains(&segment_of(p)),
            "{tag}: the next thread allocated at {p:#x}, outside the exited thread's \
             segments {segments:x?}"
        );
    }
    assert_eq!(retired_states(), 1, "{tag}: its state is retired in turn");
    for b in mine {
        b.check_and_free();
    }
    let groups: Vec<Group> = [from, to].into_iter().flatten().collect();
    for g in &groups {
        assert_all_returned(g);
    }
    if groups.is_empty() {
        cgmalloc::trim();
    }
    assert_eq!(
        retired_states(),
        0,
        "{tag}: reclaim abandons retired states"
    );
}

#[test]
fn the_next_thread_of_a_limited_group_takes_over_the_state() {
    let g = Group::create("/ret-lim").unwrap();
    g.set_max(64 * MIB as u64).unwrap();
    taken_over_by_the_next_thread(Some(g), Some(g), "limited");
    g.destroy().unwrap();
}

#[test]
fn the_next_thread_of_the_root_takes_over_the_state() {
    taken_over_by_the_next_thread(None, None, "root");
}

#[test]
fn a_thread_of_another_group_takes_over_the_state_and_charges_its_own() {
    let a = Group::create("/ret-a").unwrap();
    let b = Group::create("/ret-b").unwrap();
    b.set_max(64 * MIB as u64).unwrap();
    taken_over_by_the_next_thread(Some(a), Some(b), "other group");
    a.destroy().unwrap();
    b.destroy().unwrap();
}

/// larson-sized's shape with groups: threads of two groups exit, leaving blocks; a new
/// thread of the first group frees the second's blocks before it ever allocates. It
/// takes the state holding them over (not its own group's, which setting up would have
/// taken), so those frees are its own and its group's state stays retired; what it
/// allocates next is charged to its own group, and both groups return to 0.
#[test]
fn a_thread_without_a_state_takes_over_the_state_it_frees_into() {
    let ours = Group::create("/ret-first-ours").unwrap();
    let theirs = Group::create("/ret-first-theirs").unwrap();
    for g in [ours, theirs] {
        g.set_max(64 * MIB as u64).unwrap();
    }
    // Both threads set up before either exits, so each state is retired, not taken over
    // by the other thread.
    let both = std::sync::Arc::new(std::sync::Barrier::new(2));
    let [(own_left, _), (left, their_state)] = [(ours, 31), (theirs, 33)]
        .map(|(g, key)| {
            let both = both.clone();
            thread::spawn(move || {
                let left = leave_blocks_here(Some(g), 8, key);
                both.wait();
                (left, cgmalloc::internals::state_id())
            })
        })
        .map(|t| t.join().unwrap());
    assert_eq!(retired_states(), 2);
    let (mut before, mut after, mut retired) = (usize::MAX, 0, 0);
    let (mut base, mut charged) = ([0; 2], [0; 2]);
    let mut mine = Vec::new();
    let mut left = Some(left);
    in_bare_thread(|| {
        ours.attach_current_thread().unwrap();
        before = cgmalloc::internals::state_id();
        let mut left = left.take().unwrap().into_iter();
        left.next().unwrap().check_and_free();
        after = cgmalloc::internals::state_id();
        retired = retired_states();
        for b in left {
            b.check_and_free();
        }
        base = [current(&ours), current(&theirs)];
        mine = SIZES.iter().map(|&s| Block::new(s, s as u64)).collect();
        charged = [current(&ours), current(&theirs)];
    });
    assert_eq!(before, 0, "the thread had a state before its first free");
    assert_eq!(
        after, their_state,
        "the thread did not take over the state its first free went into"
    );
    assert_eq!(retired, 1, "its own group's state was taken too");
    // Its blocks go to its own group; the other's may only fall (a stock drained).
    assert!(
        charged[0] >= base[0] + SIZES.iter().sum::<usize>() as u64,
        "its own group was charged {} bytes for its blocks",
        charged[0] - base[0]
    );
    assert!(
        charged[1] <= base[1],
        "the other group was charged for its blocks: {} -> {}",
        base[1],
        charged[1]
    );
    for b in mine.into_iter().chain(own_left) {
        b.check_and_free();
    }
    for g in [ours, theirs] {
        assert_all_returned(&g);
    }
    assert_eq!(retired_states(), 0);
    ours.destroy().unwrap();
    theirs.destroy().unwrap();
}

#[test]
fn a_retired_state_expires_into_abandoned_segments() {
    let g = Group::create("/ret-expire").unwrap();
    g.set_max(64 * MIB as u64).unwrap();
    let live = leave_blocks(Some(g), 20, 3);
    assert_eq!(retired_states(), 1);
    let before = current(&g);
    // Past the delay, this thread's next allocation slow path (a size it never used)
    // abandons the state's segments; freeing their blocks then releases their spans.
    thread::sleep(Duration::from_millis(150));
    let b = Block::new(700 * KIB, 5);
    assert_eq!(retired_states(), 0, "the state expired");
    b.check_and_free();
    assert!(current(&g) <= before, "{} > {before}", current(&g));
    for b in live {
        b.check_and_free();
    }
    assert_all_returned(&g);
    g.destroy().unwrap();
}

#[test]
fn trim_and_expiry_abandon_retired_states() {
    let g = Group::create("/ret-trim").unwrap();
    g.set_max(64 * MIB as u64).unwrap();
    let live = leave_blocks(Some(g), 10, 7);
    assert_eq!(retired_states(), 1);
    cgmalloc::trim();
    assert_eq!(retired_states(), 0, "malloc_trim abandons retired states");
    let more = leave_blocks(Some(g), 10, 9);
    assert_eq!(retired_states(), 1);
    expire_retired();
    assert_eq!(retired_states(), 0);
    for b in live.into_iter().chain(more) {
        b.check_and_free();
    }
    assert_all_returned(&g);
    g.destroy().unwrap();
}

/// A raw thread (no allocator state before it forks): forks while a state is retired;
/// the child, where the retired states are recycled and their segments abandoned, frees
/// the exited thread's blocks, allocates in the group and exits 0 if every check held.
extern "C" fn fork_with_a_state_retired(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: the `(Group, Vec<Block>)` the test keeps alive until this thread is joined.
    let (g, live) = unsafe { &mut *(arg as *mut (Group, Vec<Block>)) };
    // SAFETY: fork in a process whose allocator handles it; the child only allocates
    // through cgmalloc and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let ok = retired_states() == 0;
        for b in std::mem::take(live) {
            b.check_and_free();
        }
        let g = *g;
        thread::spawn(move || {
            g.attach_current_thread().unwrap();
            for &s in &SIZES {
                Block::new(s, 11).check_and_free();
            }
        })
        .join()
        .unwrap();
        quiesce(&g);
        let ok = ok && current(&g) == 0;
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(i32::from(!ok)) };
    }
    exit_code_of(pid) as isize as *mut libc::c_void
}

#[test]
fn a_fork_child_recycles_the_retired_states() {
    let g = Group::create("/ret-fork").unwrap();
    g.set_max(64 * MIB as u64).unwrap();
    let live = leave_blocks(Some(g), 20, 13);
    assert_eq!(retired_states(), 1);
    let mut arg = Box::new((g, live));
    let mut t: libc::pthread_t = 0;
    let mut ret: *mut libc::c_void = std::ptr::null_mut();
    // SAFETY: `arg` outlives the thread, which is joined here.
    unsafe {
        let argp = &mut *arg as *mut (Group, Vec<Block>) as *mut libc::c_void;
        assert_eq!(
            libc::pthread_create(&mut t, std::ptr::null(), fork_with_a_state_retired, argp),
            0
        );
        assert_eq!(libc::pthread_join(t, &mut ret), 0);
    }
    assert_eq!(
        ret as isize, 0,
        "the fork child kept a retired state, or lost a block or a charge"
    );
    // The parent still has the state retired, and its blocks.
    assert_eq!(retired_states(), 1);
    for b in std::mem::take(&mut arg.1) {
        b.check_and_free();
    }
    assert_all_returned(&g);
    g.destroy().unwrap();
}

/// The block a thread keeps for its late destructor, and the key it is stored under.
static LATE_KEY: std::sync::OnceLock<libc::pthread_key_t> = std::sync::OnceLock::new();

thread_local! {
    static LATE_ROUNDS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// A destructor of a key made after cgmalloc's, so it runs after the thread's exit was
/// run in the allocator. It sets its key again until the last round of destructors
/// (glibc runs 4), then frees the block kept for it and allocates and frees again, as
/// glibc's own clean-up after the destructors does: nothing runs the exit after that.
extern "C" fn late_destructor(p: *mut libc::c_void) {
    let round = LATE_ROUNDS.with(|r| {
        r.set(r.get() + 1);
        r.get()
    });
    // glibc's PTHREAD_DESTRUCTOR_ITERATIONS.
    if round < 4 {
        // SAFETY: our key; the block stays the destructor's.
        unsafe { libc::pthread_setspecific(*LATE_KEY.get().unwrap(), p) };
        return;
    }
    // SAFETY: the live 64-byte block the thread stored under the key.
    unsafe { dealloc(p.cast(), layout(64)) };
    for &s in &SIZES[..4] {
        Block::new(s, 17).check_and_free();
    }
}

/// A raw thread attached to the group: allocates, keeps a block for its late destructor,
/// and exits.
extern "C" fn leave_a_block_for_late(arg: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: the `Group` the test keeps alive until this thread is joined.
    let g = unsafe { *(arg as *const Group) };
    g.attach_current_thread().unwrap();
    let blocks: Vec<Block> = (0..2000).map(|i| Block::new(64, i)).collect();
    // SAFETY: non-zero size.
    let kept = unsafe { alloc(layout(64)) };
    assert!(!kept.is_null());
    for b in blocks {
        b.check_and_free();
    }
    // SAFETY: a key made by the test; the block is the destructor's to free.
    unsafe { libc::pthread_setspecific(*LATE_KEY.get().unwrap(), kept.cast()) };
    std::ptr::null_mut()
}

#[test]
fn a_thread_past_its_exit_takes_no_retired_state_over() {
    let g = Group::create("/ret-late").unwrap();
    g.set_max(64 * MIB as u64).unwrap();
    // Made after cgmalloc's own key (set up by this process's first allocations), so its
    // destructor runs after cgmalloc's in the same round.
    LATE_KEY.get_or_init(|| {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: a new key with a destructor of the right type.
        assert_eq!(
            unsafe { libc::pthread_key_create(&mut key, Some(late_destructor)) },
            0
        );
        key
    });
    for round in 0..3 {
        let mut t: libc::pthread_t = 0;
        let arg = Box::new(g);
        // SAFETY: `arg` outlives the thread, which is joined here.
        unsafe {
            let argp = &*arg as *const Group as *mut libc::c_void;
            assert_eq!(
                libc::pthread_create(&mut t, std::ptr::null(), leave_a_block_for_late, argp),
                0
            );
            assert_eq!(libc::pthread_join(t, std::ptr::null_mut()), 0);
        }
        // The thread's state stays retired: its late frees and allocations did not keep
        // it (or another) to die with the thread.
        assert!(retired_states() >= 1, "round {round}");
    }
    assert_all_returned(&g);
    assert_eq!(retired_states(), 0);
    assert_eq!(
        g.read("cgroup.threads").unwrap(),
        "",
        "exited threads still listed"
    );
    g.destroy().unwrap();
}

/// What a thread saw that set itself up before the thread whose blocks it frees exited
/// (`successor_frees`).
struct Successor {
    /// Its state changed while it freed them.
    swapped: bool,
    /// Its next small block lies in the exited thread's segments.
    inside: bool,
    /// States retired after it freed them.
    retired: usize,
}

/// A thread attached to `g` runs `warm_up` and allocates a block; then a thread of `g`
/// leaves blocks of every band and exits. The first thread frees them,
/// allocates again, frees its own blocks and exits.
fn successor_frees(g: Group, warm_up: fn(), key: u64) -> Successor {
    let (to_b, from_main) = std::sync::mpsc::channel::<Vec<Block>>();
    // The exiting thread starts only once this one has a state of its own: a thread
    // that sets itself up after the exit takes the retired state over then, not by a swap.
    let set_up = std::sync::Arc::new(std::sync::Barrier::new(2));
    let b_set_up = set_up.clone();
    let b = thread::spawn(move || {
        g.attach_current_thread().unwrap();
        warm_up();
        let own = Block::new(100, 21);
        b_set_up.wait();
        let before = cgmalloc::internals::state_id();
        let inherited = from_main.recv().unwrap();
        let segments = small_segments(&inherited);
        for b in inherited {
            b.check_and_free();
        }
        let after = cgmalloc::internals::state_id();
        let next = Block::new(100, 23);
        let inside = segments.contains(&segment_of(next.p));
        let retired = retired_states();
        next.check_and_free();
        // A block of the state it gave up, if it swapped: pushed there, not chained.
        own.check_and_free();
        Successor {
            swapped: before != after,
            inside,
            retired,
        }
    });
    set_up.wait();
    let live = leave_blocks(Some(g), 8, key);
    let retired = retired_states();
    to_b.send(live).unwrap();
    let seen = b.join().unwrap();
    // The channel holds the waiting list its receiver grew, in the group.
    drop(to_b);
    assert_eq!(retired, 1, "the exited thread's state was not retired");
    seen
}

/// Larson's shape: a thread set itself up before the thread whose blocks it gets exited.
/// Its first free into the retired state swaps its own state for that one (retired in
/// its place), so the frees still to come are its own and it allocates from the state's
/// spans.
#[test]
fn a_thread_started_before_its_predecessor_exits_takes_its_state_over() {
    let g = Group::create("/ret-swap").unwrap();
    g.set_max(64 * MIB as u64).unwrap();
    let seen = successor_frees(g, || {}, 25);
    assert!(seen.swapped, "the thread kept its own state");
    assert!(
        seen.inside,
        "the thread did not allocate from the state it took over"
    );
    assert_eq!(
        seen.retired, 1,
        "its own state was not retired in place of the one it took"
    );
    // This thread's chains (blocks of the other thread's, freed by the channel) go to
    // their spans first: reclaim pushes no chain.
    cgmalloc::trim();
    assert_all_returned(&g);
    assert_eq!(retired_states(), 0);
    g.destroy().unwrap();
}

/// A reclaim callback frees the blocks of a state retired while it runs (inside the
/// charge path of the calling thread's heap): the thread keeps its state.
#[test]
fn a_reclaim_callback_freeing_into_a_retired_state_keeps_the_callers_state() {
    use std::sync::{Arc, Mutex};
    let g = Group::create("/ret-cb").unwrap();
    g.set_max(16 * MIB as u64).unwrap();
    let (to_main, blocks) = std::sync::mpsc::channel::<Vec<Block>>();
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let x = thread::spawn(move || {
        g.attach_current_thread().unwrap();
        // 8 MiB in small blocks, more than the allocations below need.
        let mine: Vec<Block> = SIZES[..4]
            .iter()
            .cycle()
            .take(400)
            .chain([8000; 1000].iter())
            .enumerate()
            .map(|(i, &s)| Block::new(s, i as u64))
            .collect();
        to_main.send(mine).unwrap();
        wait.recv().unwrap();
    });
    let held = Arc::new(Mutex::new(Some((x, go, blocks.recv().unwrap()))));
    // The channel's buffer was allocated in the group.
    drop(blocks);
    let seen = Arc::new(Mutex::new(None));
    let r = {
        let (held, seen) = (Arc::clone(&held), Arc::clone(&seen));
        g.on_reclaim(move |_| {
            let Some((x, go, blocks)) = held.lock().unwrap().take() else {
                return 0;
            };
            go.send(()).unwrap();
            x.join().unwrap();
            let retired = retired_states();
            let before = cgmalloc::internals::state_id();
            let bytes: usize = blocks.iter().map(|b| b.size).sum();
            for b in blocks {
                b.check_and_free();
            }
            *seen.lock().unwrap() = Some((retired, before, cgmalloc::internals::state_id()));
            bytes as u64
        })
        .unwrap()
    };
    g.attach_current_thread().unwrap();
    let mut boxes: Vec<Vec<u8>> = Vec::new();
    for _ in 0..64 {
        let mut v = Vec::new();
        if v.try_reserve_exact(MIB).is_err() {
            break;
        }
        v.resize(MIB, 1);
        boxes.push(v);
        if seen.lock().unwrap().is_some() {
            break;
        }
    }
    let (retired, before, after) = seen.lock().unwrap().expect("the callback never ran");
    assert_eq!(retired, 1, "the exited thread's state was not retired");
    assert_ne!(before, 0);
    assert_eq!(
        before, after,
        "the callback's frees swapped the thread's state"
    );
    drop(boxes);
    drop(r);
    Group::root().attach_current_thread().unwrap();
    cgmalloc::trim();
    assert_all_returned(&g);
    g.destroy().unwrap();
}

/// An older thread (past its first 128 allocation slow paths) keeps its own state when
/// it frees into a retired one: its blocks would wait in the state it retired.
#[test]
fn an_older_thread_keeps_its_own_state() {
    let g = Group::create("/ret-old").unwrap();
    g.set_max(64 * MIB as u64).unwrap();
    // Medium blocks: an allocation slow path each.
    let warm_up = || {
        for i in 0..200 {
            Block::new(40 * KIB, i).check_and_free();
        }
    };
    let seen = successor_frees(g, warm_up, 27);
    assert!(!seen.swapped, "an older thread swapped its state");
    cgmalloc::trim();
    assert_all_returned(&g);
    g.destroy().unwrap();
}

/// A thread pushes a block into a retired state's span and stops just after the push
/// has published it (`fault::park_push_of`), before it reads the span and its segment
/// again (`remote::after_push`). Meanwhile `malloc_trim` abandons the state, which
/// collects the block, empties the segment and caches it, and then unmaps the cached
/// segments: it must wait until the push is done with the segment (and a fork child's
/// trim must not wait for it). A small and a medium block (a large one is never
/// pushed), of a limited group.
#[test]
fn a_trim_waits_for_a_push_into_a_segment_it_unmaps() {
    let g = Group::create("/ret-push-trim").unwrap();
    g.set_max(64 * MIB as u64).unwrap();
    for (i, size) in [100, 40 * KIB].into_iter().enumerate() {
        // A state that expires before the push (its thread stalled past the delay)
        // makes the free no push: tried again.
        let tried = (0..5).find(|&n| push_parked_through_a_trim(g, size, 40 + 10 * i as u64 + n));
        assert!(
            tried.is_some(),
            "the push of a block of {size} never parked"
        );
    }
    assert_all_returned(&g);
    g.destroy().unwrap();
}

/// One round of `a_trim_waits_for_a_push_into_a_segment_it_unmaps`; false if the
/// retired state expired before the push could park.
fn push_parked_through_a_trim(g: Group, size: usize, key: u64) -> bool {
    use cgmalloc::internals::fault;
    use std::sync::mpsc::channel;
    use std::sync::{Arc, Barrier};
    use std::time::Instant;
    // Threads of the root with states of their own, set up before the block's thread
    // retires its state (a thread setting up would take that state over). The freer's
    // free of the block is a push into the retired state's span; the releaser lets the
    // push go on once the trim waits for it.
    let (ready, set_up) = channel();
    let (give, take) = channel::<Block>();
    // Neither thread exits (retiring its state) before the checks.
    let exit = Arc::new(Barrier::new(3));
    let freer = thread::spawn({
        let (ready, exit) = (ready.clone(), exit.clone());
        move || {
            Block::new(16, 50).check_and_free();
            ready.send(()).unwrap();
            if let Ok(b) = take.recv() {
                b.check_and_free();
            }
            exit.wait();
        }
    });
    let (go, went) = channel::<(usize, usize)>();
    let releaser = thread::spawn({
        let exit = exit.clone();
        move || {
            Block::new(16, 51).check_and_free();
            ready.send(()).unwrap();
            // The segment to watch once the push is parked (0: no round), and the
            // trim's waits before.
            let (seg, waits) = went.recv().unwrap();
            if seg != 0 {
                // The trim has taken the segment and waits for the push: the segment
                // is still mapped.
                let t0 = Instant::now();
                while fault::push_waits() == waits {
                    assert!(
                        t0.elapsed() < Duration::from_secs(10),
                        "the trim never waited"
                    );
                    thread::yield_now();
                }
                thread::sleep(Duration::from_millis(20));
                let held = maps_hold(read_maps(&mut Vec::new()), seg);
                assert!(held, "the trim unmapped the segment under the push");
            }
            fault::release_parked_push();
            exit.wait();
        }
    });
    set_up.recv().unwrap();
    set_up.recv().unwrap();
    // The one block of a fresh state: freeing it empties its segment.
    let mut left = None;
    in_bare_thread(|| {
        g.attach_current_thread().unwrap();
        left = Some(Block::new(size, key));
    });
    let b = left.unwrap();
    let seg = segment_of(b.p);
    assert_eq!(retired_states(), 1);
    fault::park_push_of(b.p as *mut u8);
    give.send(b).unwrap();
    let t0 = Instant::now();
    while !fault::push_parked() {
        if t0.elapsed() > Duration::from_secs(2) {
            // Freed without a push: the state expired first.
            assert_eq!(
                retired_states(),
                0,
                "the push of a block of {size} never parked"
            );
            go.send((0, 0)).unwrap();
            exit.wait();
            freer.join().unwrap();
            releaser.join().unwrap();
            return false;
        }
        thread::yield_now();
    }
    // A fork child, where the parked thread does not exist: its push never ends there,
    // and the child's trim, which unmaps the segment, must not wait for it.
    // SAFETY: fork in a process whose allocator handles it; the child only calls the
    // allocator and async-signal-safe functions, and leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: plain system calls; a child still waiting after 10 s dies.
        unsafe {
            libc::alarm(10);
            libc::_exit(i32::from(!cgmalloc::trim()));
        }
    }
    assert_eq!(exit_code_of(pid), 0, "the fork child trimmed ({size})");
    go.send((seg, fault::push_waits())).unwrap();
    let mut buf = Vec::with_capacity(MIB);
    let released = cgmalloc::trim();
    // Read at once, into memory taken before (an allocation could map a segment there).
    let unmapped = !maps_hold(read_maps(&mut buf), seg);
    assert!(released, "the trim released memory ({size})");
    assert!(
        unmapped,
        "the emptied segment of the block of {size} is unmapped"
    );
    assert_eq!(retired_states(), 0, "the trim abandoned the state ({size})");
    exit.wait();
    freer.join().unwrap();
    releaser.join().unwrap();
    true
}
