//! A group per worker thread, with cgmalloc as the global allocator.
//!
//! The main thread creates `/workers/0`, `/workers/1`, ... with their own `memory.max`.
//! Each worker thread `enter()`s its group and builds a working set out of ordinary std
//! collections (a `Vec<u8>`, a `String`, a `HashMap`); cgmalloc charges every byte of it
//! to the worker's group, not to the thread that later owns or frees it. The last worker
//! has a small `max`: it asks for more with `Vec::try_reserve`, gets an allocation
//! failure instead of an abort, and sheds the work.
//!
//! Afterwards the main thread, which now owns every working set, prints each group's
//! `memory.current` and `memory.peak` (`Group::stat`) and checks that each group was
//! charged for its own worker's working set. Exits 0 when all of that held, 1 otherwise.
//!
//! `cargo run --release --example workers`

#[global_allocator]
static GLOBAL: cgmalloc::CgMalloc = cgmalloc::CgMalloc;

use cgmalloc::Group;
use std::collections::HashMap;
use std::process::ExitCode;

const MIB: u64 = 1 << 20;

/// The per-worker plan: its group's `max` and the working set it builds.
struct Plan {
    max: u64,
    /// Bytes of the `Vec<u8>` buffer.
    buffer: u64,
    /// Entries of the `HashMap<u64, String>` (each value a 100-byte string).
    entries: u64,
}

const PLANS: [Plan; 4] = [
    Plan {
        max: 64 * MIB,
        buffer: 16 * MIB,
        entries: 20_000,
    },
    Plan {
        max: 64 * MIB,
        buffer: 8 * MIB,
        entries: 40_000,
    },
    Plan {
        max: 32 * MIB,
        buffer: 4 * MIB,
        entries: 10_000,
    },
    // Small: the working set fits, the extra reservation below does not.
    Plan {
        max: 4 * MIB,
        buffer: 2 * MIB,
        entries: 1_000,
    },
];

/// Extra memory each worker then asks for with `try_reserve`.
const EXTRA: u64 = 8 * MIB;

/// What a worker hands back: its working set (still charged to its group) and what it
/// learned.
struct Done {
    buffer: Vec<u8>,
    text: String,
    map: HashMap<u64, String>,
    /// The bytes the working set is known to occupy at least.
    bytes: u64,
    /// The error of `try_reserve(EXTRA)`, if it failed.
    refused: Option<std::collections::TryReserveError>,
}

fn work(group: Group, plan: &Plan) -> Done {
    // From here until `_guard` drops, this thread's allocations charge `group`.
    let _guard = group.enter().expect("enter the worker's group");
    let mut buffer = vec![0x5au8; plan.buffer as usize];
    let mut text = String::new();
    let mut map = HashMap::new();
    for i in 0..plan.entries {
        map.insert(i, format!("{i:0>100}"));
        if i % 100 == 0 {
            text.push_str(&format!("entry {i}\n"));
        }
    }
    let bytes = plan.buffer + plan.entries * 100 + text.len() as u64;
    // Ask for more than the group may have left: with a small `max` this fails, and a
    // worker that used `try_reserve` can say no instead of aborting the process.
    let refused = match buffer.try_reserve_exact(EXTRA as usize) {
        Ok(()) => {
            buffer.shrink_to_fit();
            None
        }
        Err(e) => Some(e),
    };
    Done {
        buffer,
        text,
        map,
        bytes,
        refused,
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("workers: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, cgmalloc::Error> {
    let parent = Group::create("/workers")?;
    let mut groups = Vec::new();
    for (i, plan) in PLANS.iter().enumerate() {
        let g = Group::create(&format!("/workers/{i}"))?;
        g.set_max(plan.max)?;
        groups.push(g);
    }

    let done: Vec<Done> = std::thread::scope(|s| {
        let handles: Vec<_> = groups
            .iter()
            .zip(&PLANS)
            .map(|(&g, plan)| s.spawn(move || work(g, plan)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    // The working sets now belong to the main thread (in the root group), but their
    // memory stays charged to the groups of the threads that allocated it.
    let mut ok = true;
    println!(
        "{:<12} {:>8} {:>12} {:>12} {:>12} {:>8}",
        "group", "max", "working set", "current", "peak", "oom_kill"
    );
    for (i, (g, d)) in groups.iter().zip(&done).enumerate() {
        let st = g.stat()?;
        println!(
            "{:<12} {:>8} {:>12} {:>12} {:>12} {:>8}",
            g.path()?,
            st.max,
            d.bytes,
            st.current,
            st.peak,
            st.events_oom_kill
        );
        if st.peak < d.bytes || st.current < d.bytes {
            println!("FAIL: {} was not charged its working set", g.path()?);
            ok = false;
        }
        if st.peak > st.max {
            println!("FAIL: {} went past its max", g.path()?);
            ok = false;
        }
        if let Some(e) = &d.refused {
            println!(
                "    {} could not reserve {} MiB more ({e}): it shed that work",
                g.path()?,
                EXTRA / MIB
            );
        }
        let small = i == PLANS.len() - 1;
        if d.refused.is_some() != small || (st.events_oom_kill > 0) != small {
            println!(
                "FAIL: {}: try_reserve refused = {}, expected {}",
                g.path()?,
                d.refused.is_some(),
                small
            );
            ok = false;
        }
        // Touch the data so that none of it is optimised away.
        ok &= d.buffer.iter().step_by(4096).all(|&b| b == 0x5a)
            && d.map.len() as u64 == PLANS[i].entries
            && d.text.starts_with("entry 0\n");
    }
    // Every byte charged to a worker group is also charged to `/workers`.
    let total = parent.stat()?;
    let sum: u64 = groups
        .iter()
        .map(|g| g.stat().map(|s| s.current))
        .sum::<Result<_, _>>()?;
    println!(
        "/workers current {} = sum of its children {}",
        total.current, sum
    );
    if total.current != sum {
        println!("FAIL: /workers is not the sum of its children");
        ok = false;
    }
    let refused = done.iter().filter(|d| d.refused.is_some()).count();
    println!("workers refused an allocation: {refused}");
    println!("{}", if ok { "workers: ok" } else { "workers: FAILED" });
    Ok(ok)
}
