//! Large blocks of a huge page or more and transparent huge pages, with `CgMalloc` as the
//! global allocator: such a block starts on a huge page boundary and, while it is live,
//! its whole huge pages are advised for huge pages (`MADV_HUGEPAGE`: `hg` in its area's
//! `VmFlags`); freed into the thread's cache, shrunk, or reused for a block of less than
//! a huge page, the advice is withdrawn (`nh`), so that `khugepaged` never fills a range
//! whose pages were given back and uncharged. The group's charge is the block's size
//! throughout, and every test ends with its group at exactly 0.

use crate::support::alloc::*;
use cgmalloc::Group;
use std::alloc::{dealloc, realloc};
use std::thread;

const HUGE: usize = 2 * MIB;

/// An address-space area of the process (`/proc/self/smaps`).
struct Area {
    lo: usize,
    hi: usize,
    flags: String,
    rss_kib: u64,
}

/// Every area of the process.
fn areas() -> Vec<Area> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mut out: Vec<Area> = Vec::new();
    for l in smaps.lines() {
        let head = l.split(' ').next().unwrap();
        if let Some((lo, hi)) = head.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                out.push(Area {
                    lo,
                    hi,
                    flags: String::new(),
                    rss_kib: 0,
                });
                continue;
            }
        }
        let Some(a) = out.last_mut() else { continue };
        if let Some(v) = l.strip_prefix("Rss:") {
            a.rss_kib = v.trim().trim_end_matches("kB").trim().parse().unwrap();
        }
        if let Some(v) = l.strip_prefix("VmFlags:") {
            a.flags = v.trim().to_string();
        }
    }
    out
}

/// The area holding `a`: its bounds and `VmFlags`.
fn area_of(a: usize) -> (usize, usize, String) {
    let all = areas();
    let x = all
        .iter()
        .find(|x| x.lo <= a && a < x.hi)
        .expect("no area holds the address");
    (x.lo, x.hi, x.flags.clone())
}

/// Resident KiB of the areas that meet `lo..hi`.
fn rss_kib(lo: usize, hi: usize) -> u64 {
    areas()
        .iter()
        .filter(|x| x.lo < hi && lo < x.hi)
        .map(|x| x.rss_kib)
        .sum()
}

fn has(flags: &str, flag: &str) -> bool {
    flags.split(' ').any(|f| f == flag)
}

/// Whether the kernel has transparent huge pages (the advice is ignored otherwise).
fn thp_built_in() -> bool {
    std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists()
}

/// Whether the system backs every range with huge pages it can (`enabled` at `always`).
fn thp_always() -> bool {
    std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .is_ok_and(|m| m.contains("[always]"))
}

#[test]
fn a_live_huge_block_is_advised_and_a_cached_one_is_not() {
    if !thp_built_in() {
        eprintln!("skipped: no transparent huge pages in this kernel");
        return;
    }
    let g = Group::create("/huge-advice").unwrap();
    g.set_max(256 * MIB as u64).unwrap();
    thread::spawn(move || {
        g.attach_current_thread().unwrap();
        let size = 5 * MIB + 12345;
        let p = written(size);
        assert_eq!(
            p as usize % HUGE,
            0,
            "a block of a huge page or more starts on one"
        );
        let (lo, hi, flags) = area_of(p as usize);
        assert!(has(&flags, "hg") && !has(&flags, "nh"), "live: {flags}");
        // The advice covers the whole huge pages only: the rest of the block, charged as
        // well, and the room past it are another area.
        assert_eq!(
            (lo, hi),
            (p as usize, p as usize + 4 * MIB),
            "the advised area"
        );
        let (_, _, tail) = area_of(p as usize + 4 * MIB);
        assert!(!has(&tail, "hg"), "past the huge pages: {tail}");
        // Resident, in the mapping's data and room (four times the block), at most what
        // the block is charged for. (With the system's THP mode at `always` the kernel
        // backs unadvised ranges with huge pages too, past the block's end included.)
        let charged = mem_pages(size) as u64 * 4096;
        let rss = rss_kib(p as usize, p as usize + 4 * size) * 1024;
        assert!(
            rss <= charged || thp_always(),
            "{rss} bytes resident for {charged} charged"
        );
        assert!(current(&g) >= charged, "{} < {charged}", current(&g));
        // SAFETY: the live block of this layout.
        unsafe { dealloc(std::hint::black_box(p), layout(size)) };
        // Cached, still mapped at the same place: the advice is withdrawn, and the
        // mapping, header to room, is one area again.
        let (lo, hi, flags) = area_of(p as usize);
        assert!(!has(&flags, "hg") && has(&flags, "nh"), "cached: {flags}");
        assert!(
            lo < p as usize - HUGE / 2 && hi >= p as usize + 4 * size,
            "one area"
        );
        // Reused for a block of a huge page or more: advised again.
        let q = written(4 * MIB);
        assert_eq!(q, p, "the cached mapping serves the next block");
        let (_, _, flags) = area_of(q as usize);
        assert!(has(&flags, "hg"), "reused: {flags}");
        // Shrunk in place: withdrawn before the tail goes back.
        // SAFETY: the live block of this layout; the new size is not 0.
        let r = unsafe { realloc(q, layout(4 * MIB), HUGE - 4096) };
        assert_eq!(r, q, "shrunk in place");
        let (_, _, flags) = area_of(r as usize);
        assert!(!has(&flags, "hg"), "shrunk: {flags}");
        // Grown past its room: one area, so `mremap` moves it without a copy (the
        // contents come along).
        // SAFETY: the live block of this layout.
        unsafe { r.write_bytes(0x3c, HUGE - 4096) };
        // SAFETY: the live block of this layout; the new size is not 0.
        let big = unsafe { realloc(r, layout(HUGE - 4096), 64 * MIB) };
        assert!(!big.is_null());
        // SAFETY: the first bytes of the grown block, kept from the old one.
        assert_eq!(unsafe { *big.add(HUGE - 4097) }, 0x3c);
        // SAFETY: the live block of this layout.
        unsafe { dealloc(big, layout(64 * MIB)) };
        let r = written(HUGE - 4096);
        // SAFETY: the live block of this layout.
        unsafe { dealloc(r, layout(HUGE - 4096)) };
        // A block of less than a huge page from the cached mapping: not advised.
        let s = written(HUGE - 8192);
        let (_, _, flags) = area_of(s as usize);
        assert!(!has(&flags, "hg"), "small: {flags}");
        // SAFETY: the live block of this layout.
        unsafe { dealloc(s, layout(HUGE - 8192)) };
        cgmalloc::trim();
    })
    .join()
    .unwrap();
    assert_all_returned(&g);
    g.destroy().unwrap();
}

/// Pages of `size` bytes.
fn mem_pages(size: usize) -> usize {
    size.div_ceil(4096)
}

/// Blocks of every size around the huge page, freed and reused in turns by two threads
/// of two limited groups: the charges stay exact (`cgmalloc::audit`, once both are
/// done) and both groups return to 0.
#[test]
fn huge_blocks_cycle_through_caches_with_exact_charges() {
    let groups = [
        Group::create("/huge-a").unwrap(),
        Group::create("/huge-b").unwrap(),
    ];
    for g in &groups {
        g.set_max(512 * MIB as u64).unwrap();
    }
    let workers: Vec<_> = groups
        .iter()
        .enumerate()
        .map(|(i, &g)| {
            thread::spawn(move || {
                g.attach_current_thread().unwrap();
                let sizes = [HUGE - 4096, HUGE, HUGE + 1, 3 * MIB, 6 * MIB + 7, 9 * MIB];
                let mut live: Vec<(*mut u8, usize)> = Vec::new();
                for round in 0..60 {
                    let size = sizes[(round * 7 + i) % sizes.len()];
                    let p = written(size);
                    // SAFETY: the live block just written.
                    assert_eq!(unsafe { *p.add(size - 1) }, 0x5a);
                    live.push((p, size));
                    if live.len() > 3 {
                        let (q, s) = live.remove(round % live.len());
                        // SAFETY: a live block of this layout.
                        unsafe { dealloc(q, layout(s)) };
                    }
                }
                for (q, s) in live {
                    // SAFETY: a live block of this layout.
                    unsafe { dealloc(q, layout(s)) };
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // With no other thread charging or moving records.
    cgmalloc::audit().unwrap();
    cgmalloc::trim();
    for g in groups {
        assert_all_returned(&g);
        g.destroy().unwrap();
    }
}
