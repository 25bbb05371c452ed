//! System calls: the layer through which the library talks to the kernel.
//!
//! Contract: every function here is a thin wrapper over one system call (or libc entry
//! that does not allocate), reports failure as a positive errno, and never allocates.
//! Descriptors are created close-on-exec; `eventfd` ones also `O_NONBLOCK`. Outside
//! `os/`, libc is called only at the C edge, for what is about C itself (`capi/`:
//! `dlsym` to interpose `pthread_create`, `strnlen` of a caller's string).

/// The calling thread's kernel thread id.
pub fn gettid() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

pub fn yield_now() {
    // SAFETY: sched_yield takes no arguments; its result carries no information we need.
    unsafe {
        libc::sched_yield();
    }
}

/// Sleeps for `ns` nanoseconds, resuming after signals until the time has passed.
pub fn sleep_ns(ns: u64) {
    let mut req = libc::timespec {
        tv_sec: (ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        let mut rem = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: both pointers refer to live, initialised timespec values on this stack.
        let r = unsafe { libc::nanosleep(&req, &mut rem) };
        if r == 0 || errno() != libc::EINTR {
            return;
        }
        req = rem;
    }
}

/// Monotonic clock in nanoseconds.
pub fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// A cheap monotonic clock in nanoseconds, with the kernel tick's resolution (a few
/// milliseconds): for delays, not for measurements.
pub fn coarse_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; both monotonic clocks exist since Linux 2.6.32.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

/// Registers the process for `membarrier` (Linux 4.14); an errno if it cannot be used.
pub fn membarrier_register() -> Result<(), i32> {
    // SAFETY: membarrier takes integer arguments only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_membarrier,
            MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
            0,
            0,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

/// A full memory barrier in every running thread of the process (after
/// `membarrier_register`): each thread's accesses before it are visible to the caller's
/// after it, and the caller's before it to each thread's after it.
pub fn membarrier() -> Result<(), i32> {
    // SAFETY: membarrier takes integer arguments only.
    let r = unsafe { libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(errno())
    }
}

pub fn errno() -> i32 {
    // SAFETY: __errno_location returns the calling thread's errno slot, always valid.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(e: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = e }
}

/// Restores `errno` when dropped, around work that may make system calls.
pub struct ErrnoGuard(i32);

impl ErrnoGuard {
    pub fn new() -> Self {
        ErrnoGuard(errno())
    }
}

impl Drop for ErrnoGuard {
    fn drop(&mut self) {
        set_errno(self.0);
    }
}

/// The value of environment variable `name` (`getenv`: no allocation), if set.
pub fn getenv(name: &core::ffi::CStr) -> Option<&'static [u8]> {
    // SAFETY: `name` is NUL-terminated; `getenv` returns null or a NUL-terminated string
    // of the environment, which lives as long as the process unless it is changed.
    unsafe {
        let v = libc::getenv(name.as_ptr());
        (!v.is_null()).then(|| core::ffi::CStr::from_ptr(v).to_bytes())
    }
}

/// Writes all of `bytes` to stderr (the private duplicate of `stderr.rs`), best effort.
pub fn write_stderr(bytes: &[u8]) {
    write_all(stderr::fd(), bytes);
}

/// Writes all of `bytes` to `fd`, retrying short writes and `EINTR`; false on failure.
pub fn write_all(fd: i32, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe the live slice `bytes`.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        bytes = &bytes[n as usize..];
    }
    true
}

pub fn abort() -> ! {
    // SAFETY: abort never returns and needs no preconditions.
    unsafe { libc::abort() }
}

/// A new eventfd (counter 0, `O_NONBLOCK | O_CLOEXEC`).
pub fn eventfd() -> Result<i32, i32> {
    // SAFETY: eventfd takes plain integers.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// Adds 1 to an eventfd's counter. A full counter (`EAGAIN`) is ignored: the reader
/// is already woken.
pub fn eventfd_signal(fd: i32) {
    let one: u64 = 1;
    // SAFETY: writes the 8 bytes of `one`, which lives on this stack.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// An eventfd for a caller and the library's own duplicate of it, which the library
/// signals and closes (so a caller closing its copy cannot make it signal an unrelated
/// file): `(caller's, own)`.
pub fn eventfd_pair() -> Result<(i32, i32), i32> {
    let user = eventfd()?;
    match dup_cloexec(user) {
        Ok(own) => Ok((user, own)),
        Err(e) => {
            close(user);
            Err(e)
        }
    }
}

/// A duplicate of `fd` with `O_CLOEXEC`.
pub fn dup_cloexec(fd: i32) -> Result<i32, i32> {
    // SAFETY: fcntl with F_DUPFD_CLOEXEC takes integers only.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        Err(errno())
    } else {
        Ok(r)
    }
}

/// Opens `path` for appending, creating it (mode 0644) if missing; close-on-exec.
pub fn open_append(path: &core::ffi::CStr) -> Result<i32, i32> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;
    // SAFETY: `path` is NUL-terminated; the mode is a plain integer.
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0o644) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// Creates `path` for writing (mode 0600), truncating it; close-on-exec.
pub fn create_private(path: &core::ffi::CStr) -> Result<i32, i32> {
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC;
    // SAFETY: `path` is NUL-terminated; the mode is a plain integer.
    let fd = unsafe { libc::open(path.as_ptr(), flags, 0o600) };
    if fd < 0 {
        Err(errno())
    } else {
        Ok(fd)
    }
}

/// Gives the file `from` the new name `to` unless `to` exists (`EEXIST`): a new hard
/// link, then `from` unlinked on success.
pub fn rename_noreplace(from: &core::ffi::CStr, to: &core::ffi::CStr) -> Result<(), i32> {
    // SAFETY: both paths are NUL-terminated.
    if unsafe { libc::link(from.as_ptr(), to.as_ptr()) } != 0 {
        return Err(errno());
    }
    unlink(from);
    Ok(())
}

/// Removes the name `path`; errors are ignored.
pub fn unlink(path: &core::ffi::CStr) {
    // SAFETY: `path` is NUL-terminated.
    unsafe { libc::unlink(path.as_ptr()) };
}

/// The parent process's id.
pub fn getppid() -> i32 {
    // SAFETY: getppid has no preconditions.
    unsafe { libc::getppid() }
}

extern "C" {
    /// glibc's `on_exit`: like `atexit`, and told the status given to `exit`.
    fn on_exit(
        f: extern "C" fn(libc::c_int, *mut libc::c_void),
        arg: *mut libc::c_void,
    ) -> libc::c_int;
}

/// Registers `f` to run at `exit` with the exit status; an error if the table is full.
pub fn at_exit_with_status(f: extern "C" fn(libc::c_int, *mut libc::c_void)) -> Result<(), ()> {
    // SAFETY: `f` stays valid for the life of the process and ignores its argument.
    match unsafe { on_exit(f, core::ptr::null_mut()) } {
        0 => Ok(()),
        _ => Err(()),
    }
}

/// Reads the start of the file at `path` into `buf`: the bytes read, 0 on any error.
pub fn read_file(path: &core::ffi::CStr, buf: &mut [u8]) -> usize {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return 0;
    }
    // SAFETY: `buf` is writable for its whole length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    close(fd);
    n.max(0) as usize
}

/// The calling process's id.
pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

/// Registers `f` to run at `exit`; an error if the table is full.
pub fn atexit(f: extern "C" fn()) -> Result<(), ()> {
    // SAFETY: `f` is a function that stays valid for the life of the process.
    match unsafe { libc::atexit(f) } {
        0 => Ok(()),
        _ => Err(()),
    }
}

pub fn close(fd: i32) {
    // SAFETY: closing a descriptor this crate owns; errors leave nothing to undo.
    unsafe { libc::close(fd) };
}

pub mod fault;
pub mod mem;
pub mod stderr;
pub mod thread;
