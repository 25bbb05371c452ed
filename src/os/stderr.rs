//! Where cgmalloc's own lines go (the exit report, warnings, fatal lines): fd 2 while it
//! is open, wherever the program has pointed it; once the program has closed it
//! (coreutils does, in its own `atexit` handler, which runs before cgmalloc's), a private
//! duplicate of fd 2 taken once at initialisation, close-on-exec.
//!
//! A program may close the duplicate too and reuse its number for another file; so the
//! duplicate is used only while it still refers to the file it was taken from (device
//! and inode compared at each use).

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

static KEPT: AtomicI32 = AtomicI32::new(-1);
static DEV: AtomicU64 = AtomicU64::new(0);
static INO: AtomicU64 = AtomicU64::new(0);

/// The device and inode `fd` refers to.
fn identity(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: an all-zero `stat` is a valid out-parameter; `fstat` fails cleanly on a
    // closed descriptor.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

/// Takes the private duplicate of fd 2 (once; nothing if fd 2 is closed).
pub fn keep() {
    if KEPT.load(Ordering::Acquire) >= 0 {
        return;
    }
    let _errno = super::ErrnoGuard::new();
    let Some((dev, ino)) = identity(2) else {
        return;
    };
    // SAFETY: duplicating a descriptor has no memory-safety preconditions.
    let fd = unsafe { libc::fcntl(2, libc::F_DUPFD_CLOEXEC, 3) };
    if fd < 0 {
        return;
    }
    DEV.store(dev, Ordering::Relaxed);
    INO.store(ino, Ordering::Relaxed);
    if KEPT
        .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        super::close(fd);
    }
}

/// The descriptor for cgmalloc's own lines: 2 while it is open, else the kept duplicate
/// while it still refers to the file it was taken from, else 2.
pub fn fd() -> i32 {
    let _errno = super::ErrnoGuard::new();
    // SAFETY: `F_GETFD` only reads the descriptor's flags.
    if unsafe { libc::fcntl(2, libc::F_GETFD) } >= 0 {
        return 2;
    }
    let fd = KEPT.load(Ordering::Acquire);
    let want = (DEV.load(Ordering::Relaxed), INO.load(Ordering::Relaxed));
    if fd >= 0 && identity(fd) == Some(want) {
        return fd;
    }
    2
}
