//! A cache that gives memory back when its group is short.
//!
//! The cache is a `Mutex<VecDeque<Vec<u8>>>` of 256 KiB entries, filled by a thread in
//! the group `/cache` (`memory.max` = 16 MiB). It registers a reclaim callback
//! (`Group::on_reclaim`): when a charge would take the group past `max`, cgmalloc calls
//! it with the bytes wanted, and the cache drops its oldest entries. The example inserts
//! 100 MiB worth of entries into a 16 MiB group: every insertion succeeds (a failure
//! would show as a `try_reserve` error), because the cache shrinks instead, and the
//! group's usage never goes past `max`.
//!
//! It prints the reclaim calls and the bytes freed as the callback counted them and as
//! `memory.stat` (`reclaim_calls`, `reclaimed`) reports them. Exits 0 when every fill
//! succeeded, the callback ran, the counts agree and usage stayed within `max`.
//!
//! `cargo run --release --example cache`

#[global_allocator]
static GLOBAL: cgmalloc::CgMalloc = cgmalloc::CgMalloc;

use cgmalloc::Group;
use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const MIB: u64 = 1 << 20;
const MAX: u64 = 16 * MIB;
const ENTRY: usize = 256 << 10;
const FILLS: usize = 400;

#[derive(Default)]
struct Cache {
    entries: Mutex<VecDeque<Vec<u8>>>,
    reclaim_calls: AtomicU64,
    reclaimed: AtomicU64,
}

impl Cache {
    /// The reclaim callback: drop the oldest entries until `wanted` bytes are freed.
    ///
    /// It runs in whichever thread is charging, possibly while that thread is inside
    /// the cache's own code: it must not block on the cache lock (`try_lock`), and it
    /// reports only what it really freed.
    fn shrink(&self, wanted: u64) -> u64 {
        self.reclaim_calls.fetch_add(1, Ordering::Relaxed);
        let Ok(mut entries) = self.entries.try_lock() else {
            return 0;
        };
        let mut freed = 0;
        while freed < wanted {
            match entries.pop_front() {
                Some(e) => freed += e.capacity() as u64,
                None => break,
            }
        }
        self.reclaimed.fetch_add(freed, Ordering::Relaxed);
        freed
    }
}

fn stat_value(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cache: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, cgmalloc::Error> {
    let group = Group::create("/cache")?;
    group.set_max(MAX)?;
    let cache = Arc::new(Cache::default());
    // The deque never grows while its lock is held: growing it is an allocation that
    // could hit the limit and call `shrink`, which would find the lock taken.
    cache.entries.lock().unwrap().reserve(FILLS);
    let c2 = cache.clone();
    let reclaimer = group.on_reclaim(move |wanted| c2.shrink(wanted))?;

    let guard = group.enter()?;
    let mut failed = 0;
    let mut highest = 0;
    for i in 0..FILLS {
        // The entry is allocated outside the lock; when the group is full this
        // allocation is what runs the reclaim callback.
        let mut entry = Vec::new();
        if entry.try_reserve_exact(ENTRY).is_err() {
            failed += 1;
            continue;
        }
        entry.resize(ENTRY, i as u8);
        cache.entries.lock().unwrap().push_back(entry);
        highest = highest.max(group.stat()?.current);
    }
    // Leave the group before reading the counters: reading `memory.stat` into a String
    // allocates, and in the full group that allocation would run the callback again.
    drop(guard);
    let held = cache.entries.lock().unwrap().len();
    let st = group.stat()?;
    let text = group.read("memory.stat")?;
    let (calls, freed) = (
        cache.reclaim_calls.load(Ordering::Relaxed),
        cache.reclaimed.load(Ordering::Relaxed),
    );
    let (stat_calls, stat_freed) = (
        stat_value(&text, "reclaim_calls"),
        stat_value(&text, "reclaimed"),
    );

    println!(
        "inserted {} entries of {} KiB ({} MiB) into a group with max {} MiB",
        FILLS - failed,
        ENTRY >> 10,
        (FILLS * ENTRY) as u64 / MIB,
        MAX / MIB
    );
    println!("failed fills: {failed}");
    println!("entries still cached: {held}");
    println!("reclaim callback: {calls} calls, {freed} bytes freed");
    println!("memory.stat: reclaim_calls {stat_calls}, reclaimed {stat_freed}");
    println!(
        "memory.current {} (highest seen {}), memory.peak {}, memory.max {}",
        st.current, highest, st.peak, st.max
    );

    let mut ok = true;
    let mut check = |cond: bool, what: &str| {
        if !cond {
            println!("FAIL: {what}");
            ok = false;
        }
    };
    check(failed == 0, "every fill succeeded");
    check(calls > 0, "the reclaim callback ran");
    check(
        freed >= ((FILLS - failed - held) * ENTRY) as u64,
        "the callback freed what was evicted",
    );
    check(
        held > 0 && (held * ENTRY) as u64 <= MAX,
        "the cache is non-empty and within max",
    );
    check(
        (stat_calls, stat_freed) == (calls, freed),
        "memory.stat agrees with the callback's own counts",
    );
    check(st.peak <= MAX && highest <= MAX, "usage stayed within max");
    drop(reclaimer);
    println!("{}", if ok { "cache: ok" } else { "cache: FAILED" });
    Ok(ok)
}
