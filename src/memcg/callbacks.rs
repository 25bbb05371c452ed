//! The table of user callbacks: reclaim callbacks and OOM handlers.
//!
//! Callbacks run in the allocating thread with no lock held. To call one, a thread takes
//! a `busy` reference under the table lock, releases the lock, calls, and gives the
//! reference back. Removing an entry (unregister, replacement, group freed) marks it
//! `removed`; its context is dropped by whoever leaves it with `busy == 0`, always after
//! the lock is released, because dropping a Rust closure may free memory.
//!
//! Invariants: an entry with `id == 0` is free; `busy` counts threads inside the callback
//! or about to call it; a removed entry is never handed out again.
//!
//! The only file of the accounting engine with `unsafe` code: a registration is a C
//! function pointer with the registrant's context, so calling it or dropping its context
//! rests on the promise made when the [`Callback`] was built. Everything else calls the
//! safe methods of [`Callback`] and [`Held`].

use super::table;
use crate::util::spin::SpinLock;
use core::ffi::c_void;

/// cbindgen:ignore
pub const MAX_CALLBACKS: usize = 512;

/// `cgm_reclaim_fn`: `(ctx, group, bytes_wanted) -> bytes freed`.
pub type ReclaimFn = unsafe extern "C" fn(*mut c_void, u64, usize) -> usize;
/// `cgm_oom_fn`: `(ctx, info) -> CGM_OOM_*`.
pub type OomFn = unsafe extern "C" fn(*mut c_void, *const OomInfoC) -> i32;
/// Drops a callback's context when the registration ends.
pub type DropFn = unsafe fn(*mut c_void);

/// `struct cgm_oom_info`: what an OOM handler is told about the refused charge.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct OomInfoC {
    /// The group being charged.
    pub group: u64,
    /// The group whose limit refused the charge: `group` itself or an ancestor.
    pub over_limit: u64,
    /// Bytes of the charge.
    pub bytes: usize,
    /// `memory.current` of `over_limit`, in bytes.
    pub usage: u64,
    /// `memory.max` of `over_limit`, in bytes.
    pub max: u64,
}

#[derive(Clone, Copy, Debug)]
enum Func {
    /// A free entry's. First, so that a free table is all zero bytes and lives in `.bss`:
    /// a process that registers nothing has none of it resident.
    None,
    Reclaim(ReclaimFn),
    Oom(OomFn),
}

/// A callback with its context, not yet registered: dropping it drops the context.
pub struct Callback {
    func: Func,
    ctx: *mut c_void,
    drop_ctx: Option<DropFn>,
}

impl Callback {
    /// A reclaim callback.
    ///
    /// # Safety
    /// `f(ctx, ..)` and `drop_ctx(ctx)` must be safe to call from any thread until the
    /// registration ends, and `drop_ctx` must accept being called once, at its end.
    pub unsafe fn reclaim(f: ReclaimFn, ctx: *mut c_void, drop_ctx: Option<DropFn>) -> Self {
        Callback {
            func: Func::Reclaim(f),
            ctx,
            drop_ctx,
        }
    }

    /// An OOM handler.
    ///
    /// # Safety
    /// As for [`Callback::reclaim`].
    pub unsafe fn oom(f: OomFn, ctx: *mut c_void, drop_ctx: Option<DropFn>) -> Self {
        Callback {
            func: Func::Oom(f),
            ctx,
            drop_ctx,
        }
    }

    /// Its parts, for an entry that now owns the context.
    fn into_parts(self) -> (Func, *mut c_void, Option<DropFn>) {
        let me = core::mem::ManuallyDrop::new(self);
        (me.func, me.ctx, me.drop_ctx)
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        drop(Orphan(self.drop_ctx.map(|d| (d, self.ctx))));
    }
}

#[derive(Clone, Copy)]
struct Entry {
    id: u64,
    group: u64,
    func: Func,
    ctx: *mut c_void,
    drop_ctx: Option<DropFn>,
    busy: u32,
    removed: bool,
    /// The reclaim pass that last called this entry.
    pass: u64,
}

impl Entry {
    const FREE: Entry = Entry {
        id: 0,
        group: 0,
        func: Func::None,
        ctx: core::ptr::null_mut(),
        drop_ctx: None,
        busy: 0,
        removed: false,
        pass: 0,
    };
}

struct Table {
    entries: [Entry; MAX_CALLBACKS],
    next_id: u64,
    next_pass: u64,
}

// SAFETY: the raw context pointers are only handed to their callbacks and drop functions,
// which the registrant promised are safe to call from any thread.
unsafe impl Send for Table {}

static TABLE: SpinLock<Table> = SpinLock::new(Table {
    entries: [Entry::FREE; MAX_CALLBACKS],
    next_id: 0,
    next_pass: 0,
});

/// A context to drop once no lock is held.
#[must_use]
pub struct Orphan(Option<(DropFn, *mut c_void)>);

impl Orphan {
    fn of(e: &Entry) -> Orphan {
        Orphan(e.drop_ctx.map(|d| (d, e.ctx)))
    }
    const NONE: Orphan = Orphan(None);
}

impl Drop for Orphan {
    fn drop(&mut self) {
        if let Some((d, ctx)) = self.0.take() {
            // The program's code, which may run inside the allocator (a group freed by an
            // uncharge): at memalloc depth, as the callback itself.
            // SAFETY: the registrant paired `ctx` with `d`; the entry is gone, so this is
            // the only drop.
            crate::util::memalloc::with_memalloc(|| unsafe { d(ctx) });
        }
    }
}

/// A callback handed out for one call; gives its reference back on drop.
pub struct Held {
    index: usize,
    func: Func,
    ctx: *mut c_void,
    group: u64,
}

impl Held {
    /// The handle of the group it was registered on.
    pub fn group(&self) -> u64 {
        self.group
    }

    /// Calls a reclaim callback, asking for `wanted` bytes: the bytes it freed (`None`
    /// for an OOM handler).
    pub fn call_reclaim(&self, wanted: usize) -> Option<usize> {
        let Func::Reclaim(f) = self.func else {
            return None;
        };
        // SAFETY: `f` and `ctx` were registered together through `Callback::reclaim`,
        // whose caller made them callable from any thread until the registration ends;
        // `self` keeps it from ending during the call.
        Some(unsafe { f(self.ctx, self.group, wanted) })
    }

    /// Calls an OOM handler: its `CGM_OOM_*` answer (`None` for a reclaim callback).
    pub fn call_oom(&self, info: &OomInfoC) -> Option<i32> {
        let Func::Oom(f) = self.func else {
            return None;
        };
        // SAFETY: as in `call_reclaim`, through `Callback::oom`; `info` outlives the call.
        Some(unsafe { f(self.ctx, info) })
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let orphan = {
            let mut t = TABLE.lock();
            let e = &mut t.entries[self.index];
            e.busy -= 1;
            if e.removed && e.busy == 0 {
                let o = Orphan::of(e);
                *e = Entry::FREE;
                o
            } else {
                Orphan::NONE
            }
        };
        drop(orphan);
    }
}

fn hold(t: &mut Table, index: usize) -> Held {
    let e = &mut t.entries[index];
    e.busy += 1;
    Held {
        index,
        func: e.func,
        ctx: e.ctx,
        group: e.group,
    }
}

/// Marks an entry removed; returns its context to drop if nobody is calling it.
fn remove_at(t: &mut Table, index: usize) -> Orphan {
    let e = &mut t.entries[index];
    e.removed = true;
    if e.busy == 0 {
        let o = Orphan::of(e);
        *e = Entry::FREE;
        o
    } else {
        Orphan::NONE
    }
}

/// Registers a callback for `group` (a handle); returns `(id, index)`. `ENOSPC` when the
/// table is full (the context is then dropped).
pub fn add(group: u64, callback: Callback) -> Result<(u64, usize), i32> {
    table::GROUP_FREED[table::FREED_CALLBACKS].install(group_freed);
    let mut t = TABLE.lock();
    let Some(index) = t.entries.iter().position(|e| e.id == 0) else {
        drop(t);
        drop(callback);
        return Err(libc::ENOSPC);
    };
    let (func, ctx, drop_ctx) = callback.into_parts();
    t.next_id += 1;
    let id = t.next_id;
    t.entries[index] = Entry {
        id,
        group,
        func,
        ctx,
        drop_ctx,
        busy: 0,
        removed: false,
        pass: 0,
    };
    Ok((id, index))
}

/// Unregisters the reclaim callback `id`; `ENOENT` if there is none.
pub fn remove(id: u64) -> Result<(), i32> {
    let orphan = {
        let mut t = TABLE.lock();
        let index = t
            .entries
            .iter()
            .position(|e| e.id == id && id != 0 && !e.removed && matches!(e.func, Func::Reclaim(_)))
            .ok_or(libc::ENOENT)?;
        remove_at(&mut t, index)
    };
    drop(orphan);
    Ok(())
}

/// Removes the entry at `index` if it still holds registration `id`.
pub fn remove_index(index: usize, id: u64) {
    let orphan = {
        let mut t = TABLE.lock();
        if t.entries[index].id == id && !t.entries[index].removed {
            remove_at(&mut t, index)
        } else {
            Orphan::NONE
        }
    };
    drop(orphan);
}

/// Hands out the live entry at `index` for one call, if the low bits of its registration
/// id (`id & mask`) are `id_bits`.
pub fn hold_index(index: usize, id_bits: u64, mask: u64) -> Option<Held> {
    let mut t = TABLE.lock();
    let e = &t.entries[index];
    if e.id == 0 || e.removed || e.id & mask != id_bits {
        return None;
    }
    Some(hold(&mut t, index))
}

/// Ends every registration of the freed group `handle`.
pub fn group_freed(handle: u64) {
    let mut orphans = [const { Orphan::NONE }; 8];
    loop {
        let mut n = 0;
        {
            let mut t = TABLE.lock();
            for i in 0..MAX_CALLBACKS {
                if n == orphans.len() {
                    break;
                }
                let e = &t.entries[i];
                if e.id != 0 && !e.removed && e.group == handle {
                    orphans[n] = remove_at(&mut t, i);
                    n += 1;
                }
            }
        }
        // Dropped here, with no lock held.
        for o in orphans.iter_mut().take(n) {
            drop(core::mem::replace(o, Orphan::NONE));
        }
        if n < orphans.len() {
            return;
        }
    }
}

/// A new reclaim pass number: each entry is called at most once per pass.
pub fn new_pass() -> u64 {
    let mut t = TABLE.lock();
    t.next_pass += 1;
    t.next_pass
}

/// Picks the reclaim callback to call next in `pass`: among entries not yet called in
/// it, the one for which `rank(group handle)` is highest (`None` = not eligible); ties
/// go to the earlier registration. Marks it called and hands it out.
pub fn pick_reclaimer(pass: u64, mut rank: impl FnMut(u64) -> Option<u64>) -> Option<Held> {
    let mut t = TABLE.lock();
    let mut best: Option<(usize, u64, u64)> = None;
    for (i, e) in t.entries.iter().enumerate() {
        if e.id == 0 || e.removed || e.pass == pass || !matches!(e.func, Func::Reclaim(_)) {
            continue;
        }
        if let Some(r) = rank(e.group) {
            let better = match best {
                None => true,
                Some((_, br, bid)) => r > br || (r == br && e.id < bid),
            };
            if better {
                best = Some((i, r, e.id));
            }
        }
    }
    let (i, _, _) = best?;
    t.entries[i].pass = pass;
    Some(hold(&mut t, i))
}

/// Takes the table lock for `fork()`.
pub fn lock_for_fork() {
    TABLE.lock_for_fork();
}

pub fn unlock_after_fork() {
    TABLE.force_unlock();
}
