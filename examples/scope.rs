//! `Group::scope`: charging async tasks that share a thread to different groups.
//!
//! A thread's group follows the thread, but async tasks hop: one executor thread polls
//! many of them, interleaved. `group.scope(fut)` wraps a future so that every poll of it
//! runs with the polling thread in `group`; between polls the thread is back where it
//! was.
//!
//! A tiny executor (std only: round-robin polling, a waker that unparks the thread) runs
//! two tasks on the main thread, one scoped to `/tasks/a`, one to `/tasks/b`. Each
//! allocates a buffer per step and yields between steps, so their polls alternate. After
//! both finish (their buffers still alive), each group's `memory.current` holds its own
//! task's buffers and not the other's, and the executor saw the thread in the root group
//! between polls. Exits 0 when that held.
//!
//! `cargo run --release --example scope`

#[global_allocator]
static GLOBAL: cgmalloc::CgMalloc = cgmalloc::CgMalloc;

use cgmalloc::Group;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const STEPS: usize = 32;
/// Bytes per step: task `a` allocates 128 KiB a step (4 MiB), task `b` 32 KiB (1 MiB).
const CHUNK: [usize; 2] = [128 << 10, 32 << 10];

/// Returns `Pending` once (after asking to be polled again), then `Ready`.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn yield_now() -> YieldNow {
    YieldNow(false)
}

/// One task: a buffer per step, a yield between steps; returns its buffers.
async fn task(chunk: usize) -> Vec<Vec<u8>> {
    let mut held = Vec::new();
    for step in 0..STEPS {
        held.push(vec![step as u8; chunk]);
        yield_now().await;
    }
    held
}

/// Wakes the executor thread.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

type Task<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// Polls every unfinished task in turn until all are done; parks when a round made no
/// task ready. Returns the outputs and the order of the polls (task indices).
fn block_on_all<T>(mut tasks: Vec<Task<'_, T>>, mut between: impl FnMut()) -> (Vec<T>, Vec<usize>) {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut out: Vec<Option<T>> = tasks.iter().map(|_| None).collect();
    let mut order = Vec::new();
    while out.iter().any(Option::is_none) {
        for (i, t) in tasks.iter_mut().enumerate() {
            if out[i].is_some() {
                continue;
            }
            order.push(i);
            if let Poll::Ready(v) = t.as_mut().poll(&mut cx) {
                out[i] = Some(v);
            }
            between();
        }
        if out.iter().any(Option::is_none) {
            // Returns at once if a task woke us during the round.
            thread::park();
        }
    }
    (out.into_iter().map(Option::unwrap).collect(), order)
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("scope: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<bool, cgmalloc::Error> {
    Group::create("/tasks")?;
    let groups = [Group::create("/tasks/a")?, Group::create("/tasks/b")?];
    let root = Group::root();
    let mut outside_root = true;
    let tasks: Vec<Task<'_, Vec<Vec<u8>>>> = vec![
        Box::pin(groups[0].scope(task(CHUNK[0]))),
        Box::pin(groups[1].scope(task(CHUNK[1]))),
    ];
    let (results, order) = block_on_all(tasks, || outside_root &= Group::current() == root);

    let mut ok = true;
    let mut check = |cond: bool, what: &str| {
        if !cond {
            println!("FAIL: {what}");
            ok = false;
        }
    };
    // Interleaved: the polls alternate a, b, a, b, ... on this one thread.
    let alternating =
        order.len() == 2 * (STEPS + 1) && order.iter().enumerate().all(|(k, &i)| i == k % 2);
    println!(
        "{} polls on thread {:?}, first ten: {:?}",
        order.len(),
        thread::current().id(),
        &order[..10.min(order.len())]
    );
    check(alternating, "the two tasks' polls alternated");
    check(
        outside_root,
        "between polls the thread was in the root group",
    );

    for (i, g) in groups.iter().enumerate() {
        let st = g.stat()?;
        let own = (STEPS * CHUNK[i]) as u64;
        let bytes: usize = results[i].iter().map(Vec::len).sum();
        println!(
            "{}: task allocated {} KiB in {STEPS} steps; memory.current {} KiB, memory.peak {} KiB",
            g.path()?,
            bytes as u64 / KIB,
            st.current / KIB,
            st.peak / KIB
        );
        // At least its own buffers; less than its own plus the other task's (slack for
        // the task's small allocations and a stock of precharged pages).
        let other = (STEPS * CHUNK[1 - i]) as u64;
        check(
            bytes as u64 == own && st.current >= own,
            "each group holds its own task's buffers",
        );
        check(
            st.current < own + other.min(MIB),
            "no group holds the other task's buffers",
        );
    }
    println!("{}", if ok { "scope: ok" } else { "scope: FAILED" });
    Ok(ok)
}
