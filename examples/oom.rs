//! OOM handlers: what happens when reclaim could not make room under a group's `max`.
//!
//! Two groups of 8 MiB each:
//! - `/oom/batch`, low priority: its handler (`Group::on_oom`) logs the `OomInfo` and
//!   answers `OomAction::Fail`, so the allocation fails; the batch loop allocates with
//!   `Vec::try_reserve`, sees the error and sheds the rest of its jobs.
//! - `/oom/interactive`: its handler first drops a 2 MiB emergency reserve and answers
//!   `Retry` (the charge is tried again and now fits); once the reserve is gone it answers
//!   `Force`, and the request is charged past `max`. Every interactive request succeeds.
//!
//! At the end it prints both groups' `memory.events` (`max`, `oom`, `oom_kill`) and
//! checks them: the batch group had OOM kills (failed allocations), the interactive one
//! none, and its usage is now above its `max` (forced). Exits 0 when all of that held.
//!
//! `cargo run --release --example oom`

#[global_allocator]
static GLOBAL: cgmalloc::CgMalloc = cgmalloc::CgMalloc;

use cgmalloc::{Group, OomAction, OomInfo};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

const MIB: u64 = 1 << 20;
const MAX: u64 = 8 * MIB;
const JOB: usize = 1 << 20;
const JOBS: usize = 16;

/// The interactive group's emergency reserve, given up on its first OOM.
static RESERVE: Mutex<Option<Vec<u8>>> = Mutex::new(None);
static BATCH_OOMS: AtomicU64 = AtomicU64::new(0);
static RETRIES: AtomicU64 = AtomicU64::new(0);
static FORCED: AtomicU64 = AtomicU64::new(0);

fn log(info: &OomInfo, decision: &str) {
    // Allocations inside a handler are forced (never refused, no recursion), so it may
    // format and print.
    println!(
        "oom: charging {} for {} KiB; {} is at {} KiB of max {} KiB -> {decision}",
        info.group.path().unwrap_or_default(),
        info.bytes >> 10,
        info.over_limit.path().unwrap_or_default(),
        info.usage >> 10,
        info.max >> 10
    );
}

fn events(g: Group) -> Result<String, cgmalloc::Error> {
    Ok(g.read("memory.events")?.trim_end().replace('\n', ", "))
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("oom: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, cgmalloc::Error> {
    Group::create("/oom")?;
    let batch = Group::create("/oom/batch")?;
    let interactive = Group::create("/oom/interactive")?;
    for g in [batch, interactive] {
        g.set_max(MAX)?;
    }

    batch.on_oom(|info| {
        BATCH_OOMS.fetch_add(1, Ordering::Relaxed);
        log(info, "Fail: the batch job must wait");
        OomAction::Fail
    })?;
    interactive.on_oom(|info| {
        // `try_lock`: a handler must not block on a lock the allocating thread may hold.
        let reserve = RESERVE.try_lock().ok().and_then(|mut r| r.take());
        if let Some(reserve) = reserve {
            drop(reserve);
            RETRIES.fetch_add(1, Ordering::Relaxed);
            log(info, "freed the 2 MiB reserve, Retry");
            OomAction::Retry
        } else {
            FORCED.fetch_add(1, Ordering::Relaxed);
            log(info, "nothing left to free, Force past max");
            OomAction::Force
        }
    })?;

    // Batch: accept jobs until the group refuses memory, then shed the rest.
    // (Nothing is printed while the thread is in a full group: printing may allocate.)
    let mut accepted = Vec::with_capacity(JOBS);
    let mut shed = None;
    {
        let _in = batch.enter()?;
        for i in 0..JOBS {
            let mut job: Vec<u8> = Vec::new();
            if let Err(e) = job.try_reserve_exact(JOB) {
                shed = Some((i, e));
                break;
            }
            job.resize(JOB, 1);
            accepted.push(job);
        }
    }
    if let Some((i, e)) = &shed {
        println!("batch: job {i}: {e}; shedding {} jobs", JOBS - i);
    }
    println!("batch: {} of {JOBS} jobs accepted", accepted.len());

    // Interactive: every request must be served.
    let mut served = Vec::with_capacity(JOBS);
    let mut refused = 0;
    {
        let _in = interactive.enter()?;
        *RESERVE.lock().unwrap() = Some(vec![7u8; 2 * MIB as usize]);
        for _ in 0..10 {
            let mut req: Vec<u8> = Vec::new();
            if req.try_reserve_exact(JOB).is_err() {
                refused += 1;
                continue;
            }
            req.resize(JOB, 2);
            served.push(req);
        }
    }
    println!(
        "interactive: {} of 10 requests served, {refused} refused",
        served.len()
    );

    let b = batch.stat()?;
    let i = interactive.stat()?;
    println!("/oom/batch memory.events: {}", events(batch)?);
    println!("/oom/interactive memory.events: {}", events(interactive)?);
    println!(
        "/oom/interactive memory.current {} KiB, memory.max {} KiB",
        i.current >> 10,
        i.max >> 10
    );
    let (retries, forced) = (
        RETRIES.load(Ordering::Relaxed),
        FORCED.load(Ordering::Relaxed),
    );
    println!("interactive handler: {retries} retry, {forced} forced");

    let mut ok = true;
    let mut check = |cond: bool, what: &str| {
        if !cond {
            println!("FAIL: {what}");
            ok = false;
        }
    };
    let n = accepted.len();
    check(
        n > 0 && n < JOBS,
        "the batch group accepted some jobs, then shed the rest",
    );
    check(
        b.events_max >= 1 && b.events_oom >= 1 && b.events_oom_kill >= 1,
        "batch: max, oom and oom_kill events",
    );
    check(BATCH_OOMS.load(Ordering::Relaxed) >= 1, "batch handler ran");
    check(
        served.len() == 10 && refused == 0,
        "every interactive request served",
    );
    check(
        retries == 1 && forced >= 1,
        "interactive: one Retry, then Force",
    );
    check(
        i.events_oom >= 2 && i.events_oom_kill == 0,
        "interactive: oom events and no oom_kill",
    );
    check(i.current > i.max, "interactive: forced past max");
    println!("{}", if ok { "oom: ok" } else { "oom: FAILED" });
    Ok(ok)
}
