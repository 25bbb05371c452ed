//! Helpers of the `alloc` tests (which run with `CgMalloc` as the global allocator):
//! interface-file parsing, quiescing a group (every stock drained, every cached span
//! reclaimed), the block patterns the tests write and check, segments, page residency
//! and the process's mappings.

use cgmalloc::Group;
use std::collections::BTreeMap;

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;
pub const PAGE: u64 = 4096;
/// A segment's size and alignment (`alloc::types::SEG_SIZE`).
pub const SEG: usize = 4 * MIB;

/// The segment holding the address `p`.
pub fn segment_of(p: usize) -> usize {
    p & !(SEG - 1)
}

/// `key value` lines (memory.stat, memory.events, cgroup.stat) as a map.
pub fn kv(g: &Group, file: &str) -> BTreeMap<String, u64> {
    let text = g
        .read(file)
        .unwrap_or_else(|e| panic!("read {file} of {:?}: {e}", g.path()));
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{file} does not end with a newline: {text:?}"
    );
    text.lines()
        .map(|l| {
            let (k, v) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("bad {file} line {l:?}"));
            let v = v
                .trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("bad {file} value {l:?}"));
            (k.to_string(), v)
        })
        .collect()
}

pub fn stat_key(g: &Group, key: &str) -> u64 {
    *kv(g, "memory.stat")
        .get(key)
        .unwrap_or_else(|| panic!("memory.stat has no {key}"))
}

pub fn event(g: &Group, key: &str) -> u64 {
    *kv(g, "memory.events")
        .get(key)
        .unwrap_or_else(|| panic!("memory.events has no {key}"))
}

/// `memory.current` through `Group::stat` (which never allocates).
pub fn current(g: &Group) -> u64 {
    g.stat().expect("stat").current
}

/// `memory.current` as the interface file reads it (checked against `stat`).
pub fn current_file(g: &Group) -> u64 {
    let t = g.read("memory.current").expect("read memory.current");
    assert!(t.ends_with('\n'), "memory.current {t:?}");
    t.trim().parse().expect("memory.current is a number")
}

/// Reclaims everything reclaimable in `g`'s subtree (EAGAIN — less freed than asked —
/// is expected with `u64::MAX` and ignored; any other error fails the test).
pub fn reclaim_all(g: &Group) {
    if let Err(e) = g.reclaim(u64::MAX) {
        assert_eq!(e.errno(), libc::EAGAIN, "reclaim of {:?}: {e}", g.path());
    }
}

/// Brings `g`'s subtree to quiescence from the calling thread: every thread's stock
/// drained, every cached empty span and large mapping reclaimed, stocks drained again
/// (reclaim may return pages through this thread's stock).
pub fn quiesce(g: &Group) {
    cgmalloc::drain_stocks();
    reclaim_all(g);
    cgmalloc::drain_stocks();
}

/// Asserts that `g`'s subtree holds nothing: `memory.current` 0 (through both `stat` and
/// the file) and every allocator statistic of `memory.stat` 0.
pub fn assert_empty(g: &Group) {
    let path = g.path().unwrap_or_default();
    let s = g.stat().expect("stat");
    let st = kv(g, "memory.stat");
    assert_eq!(s.current, 0, "{path}: memory.current, memory.stat {st:?}");
    assert_eq!(current_file(g), 0, "{path}: memory.current file");
    assert_eq!(s.stock, 0, "{path}: stock");
    for key in ["allocated", "small", "large", "cached", "free", "stock"] {
        assert_eq!(st[key], 0, "{path}: memory.stat {key} in {st:?}");
    }
    assert!(s.peak >= s.current, "{path}: peak {} < current", s.peak);
}

/// Quiesces `g`, then asserts that it holds nothing (`assert_empty`) and that every page
/// run it was charged for was uncharged (`nr_charges == nr_uncharges`).
pub fn assert_all_returned(g: &Group) {
    quiesce(g);
    assert_empty(g);
    let st = kv(g, "memory.stat");
    assert_eq!(st["nr_charges"], st["nr_uncharges"], "{st:?}");
}

/// The byte a pattern with key `key` holds at offset `i`.
#[inline]
pub fn pat(key: u64, i: usize) -> u8 {
    (key >> ((i & 7) * 8)) as u8 ^ (i >> 3) as u8
}

/// The offsets of a block of `size` bytes that carry its pattern: every byte up to 4 KiB;
/// above, the first and last 512 bytes and 8 bytes every 16 KiB (every 256 KiB from
/// 1 MiB up), so that big blocks stay cheap to fill and check (page faults dominate
/// otherwise).
pub fn pattern_ranges(size: usize, mut f: impl FnMut(usize, usize)) {
    if size <= 4096 {
        f(0, size);
        return;
    }
    f(0, 512);
    let stride = if size >= MIB { 256 * KIB } else { 16 * KIB };
    let mut off = stride;
    while off + 8 <= size - 512 {
        f(off, off + 8);
        off += stride;
    }
    f(size - 512, size);
}

/// Writes the pattern of `key` into the block.
///
/// # Safety
/// `p` is valid for writes of `size` bytes.
pub unsafe fn fill(p: *mut u8, size: usize, key: u64) {
    pattern_ranges(size, |a, b| {
        for i in a..b {
            // SAFETY: `i < size`.
            unsafe { p.add(i).write(pat(key, i)) };
        }
    });
}

/// The first offset where the block does not hold the pattern of `key`.
///
/// # Safety
/// `p` is valid for reads of `size` bytes.
pub unsafe fn check(p: *const u8, size: usize, key: u64) -> Option<usize> {
    // SAFETY: as above.
    unsafe { check_upto(p, size, size, key) }
}

/// Like `check`, for a block that held a pattern for `size` bytes and was cut to
/// `upto` bytes: only the offsets below `upto` are checked.
///
/// # Safety
/// `p` is valid for reads of `upto.min(size)` bytes.
pub unsafe fn check_upto(p: *const u8, size: usize, upto: usize, key: u64) -> Option<usize> {
    let mut bad = None;
    pattern_ranges(size, |a, b| {
        if bad.is_some() {
            return;
        }
        for i in a..b.min(upto) {
            // SAFETY: `i < size`.
            if unsafe { p.add(i).read() } != pat(key, i) {
                bad = Some(i);
                return;
            }
        }
    });
    bad
}

/// Waits for the child `pid` of the calling process: its exit status, or -1 if it did
/// not exit (a signal).
pub fn exit_code_of(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: waits for the caller's own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// The layout of a block of `size` bytes aligned to 16.
pub fn layout(size: usize) -> std::alloc::Layout {
    std::alloc::Layout::from_size_align(size, 16).unwrap()
}

/// Resident pages of `len` bytes at `p` (page-aligned), read with `mincore`; a range
/// that is not mapped counts none.
pub fn resident(p: *const u8, len: usize) -> usize {
    let mut vec = vec![0u8; len.div_ceil(PAGE as usize)];
    // SAFETY: `vec` has one byte per page of the range; mincore only reads the mapping.
    let r = unsafe { libc::mincore(p as *mut libc::c_void, len, vec.as_mut_ptr()) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::ENOMEM), "mincore: {e}");
        return 0;
    }
    vec.iter().filter(|&&b| b & 1 != 0).count()
}

/// A block of `size` bytes (aligned to 16), every byte written.
pub fn written(size: usize) -> *mut u8 {
    // SAFETY: non-zero size.
    let p = std::hint::black_box(unsafe { std::alloc::alloc(layout(size)) });
    assert!(!p.is_null());
    // SAFETY: the live block.
    unsafe { p.write_bytes(0x5a, size) };
    p
}

/// The process's mappings (`/proc/self/maps`), read into `buf`, which allocates nothing
/// if its capacity holds them: read after a trim, the text cannot show a segment that
/// its own allocation mapped at an address just unmapped.
pub fn read_maps(buf: &mut Vec<u8>) -> &str {
    use std::io::Read;
    buf.clear();
    std::fs::File::open("/proc/self/maps")
        .unwrap()
        .read_to_end(buf)
        .unwrap();
    std::str::from_utf8(buf).unwrap()
}

/// Whether the address `a` lies in one of the mappings `maps` lists (`read_maps`).
pub fn maps_hold(maps: &str, a: usize) -> bool {
    maps.lines().any(|l| {
        let range = l.split(' ').next().unwrap();
        let (lo, hi) = range.split_once('-').unwrap();
        let hex = |s| usize::from_str_radix(s, 16).unwrap();
        hex(lo) <= a && a < hex(hi)
    })
}
