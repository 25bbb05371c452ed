//! Three tenants share one process: each has a group with limits, worker threads
//! attached to it, a cache that gives memory back when its group is short, and requests
//! whose buffers are charged to the tenant. At the end the group report shows what each
//! tenant used, its peak and the events its limits caused.
//!
//! `cargo run --release --example tenants`

use cgmalloc::{Charge, Group, OomAction};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const MIB: u64 = 1 << 20;

struct Tenant {
    name: &'static str,
    max: u64,
    high: u64,
    low: u64,
    workers: usize,
    request_size: u64,
}

fn main() -> Result<(), cgmalloc::Error> {
    let tenants = [
        Tenant {
            name: "gold",
            max: 64 * MIB,
            high: 56 * MIB,
            low: 32 * MIB,
            workers: 2,
            request_size: 3 * MIB,
        },
        Tenant {
            name: "silver",
            max: 32 * MIB,
            high: 28 * MIB,
            low: 0,
            workers: 2,
            request_size: 2 * MIB,
        },
        Tenant {
            name: "bronze",
            max: 8 * MIB,
            high: u64::MAX,
            low: 0,
            workers: 1,
            request_size: 3 * MIB,
        },
    ];
    let all = Group::create("/tenants")?;
    all.set_max(96 * MIB)?;
    let failed = Arc::new(AtomicU64::new(0));
    // Caches and their reclaimers outlive the workers, so the report shows what they hold.
    let mut keep = Vec::new();

    std::thread::scope(|s| -> Result<(), cgmalloc::Error> {
        for t in &tenants {
            let g = Group::create(&format!("/tenants/{}", t.name))?;
            g.set_max(t.max)?;
            g.set_high(t.high)?;
            g.set_low(t.low)?;
            // The tenant's cache: charged to its group, trimmed when the group is short.
            let cache: Arc<Mutex<VecDeque<Charge>>> = Arc::default();
            let c2 = cache.clone();
            let reclaimer = g.on_reclaim(move |wanted| {
                let mut freed = 0;
                let mut cache = c2.lock().unwrap();
                while freed < wanted {
                    match cache.pop_front() {
                        Some(entry) => freed += entry.bytes(),
                        None => break,
                    }
                }
                freed
            })?;
            let f2 = failed.clone();
            g.on_oom(move |_info| {
                f2.fetch_add(1, Ordering::Relaxed);
                OomAction::Fail
            })?;
            for w in 0..t.workers {
                let cache = cache.clone();
                let size = t.request_size;
                s.spawn(move || {
                    g.attach_current_thread().unwrap();
                    for i in 0..200u64 {
                        // A request: a buffer for its lifetime, then a cache entry.
                        let Ok(buffer) = g.try_charge(size) else {
                            continue;
                        };
                        if (i + w as u64) % 3 == 0 {
                            if let Ok(entry) = g.try_charge(size / 2) {
                                cache.lock().unwrap().push_back(entry);
                            }
                        }
                        drop(buffer);
                    }
                });
            }
            keep.push((reclaimer, cache));
        }
        Ok(())
    })?;
    println!(
        "requests refused after reclaim: {}",
        failed.load(Ordering::Relaxed)
    );
    let cached: usize = keep.iter().map(|(_, c)| c.lock().unwrap().len()).sum();
    println!("cache entries held: {cached}");
    cgmalloc::drain_stocks();
    let mut groups = vec!["/tenants".to_string()];
    groups.extend(tenants.iter().map(|t| format!("/tenants/{}", t.name)));
    print_report(&groups)?;
    for t in &tenants {
        let g = Group::open(&format!("/tenants/{}", t.name))?;
        let stat = g.read("memory.stat")?;
        let pick = |k: &str| {
            stat.lines()
                .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
                .unwrap_or_default()
        };
        println!(
            "{:<7} cache callbacks: {} calls, {} bytes given back",
            t.name,
            pick("reclaim_calls "),
            pick("reclaimed ")
        );
    }
    Ok(())
}

/// Prints one row per group from its interface files, as the at-exit report
/// (`CGMALLOC_STATS`) shows it: sizes, then the events its limits caused.
fn print_report(paths: &[String]) -> Result<(), cgmalloc::Error> {
    println!("group report");
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>8} events",
        "group", "current", "peak", "max", "high"
    );
    for path in paths {
        let g = Group::open(path)?;
        let mut row = format!("{path:<16}");
        for file in ["memory.current", "memory.peak", "memory.max", "memory.high"] {
            row += &format!(" {:>8}", human(g.read(file)?.trim()));
        }
        for line in g.read("memory.events")?.lines() {
            row += &format!(" {}", line.replacen(' ', "=", 1));
        }
        println!("{row}");
    }
    Ok(())
}

/// A byte count (`"100663296"`, `"max"`) the way the report writes it: `96.0M`, `max`.
fn human(value: &str) -> String {
    let Ok(bytes) = value.parse::<u64>() else {
        return value.to_string();
    };
    for (unit, scale) in [("G", 1u64 << 30), ("M", 1 << 20), ("K", 1 << 10)] {
        if bytes >= scale {
            return format!("{:.1}{unit}", bytes as f64 / scale as f64);
        }
    }
    bytes.to_string()
}
