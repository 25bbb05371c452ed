//! A write to a group's interface file requested from outside the process
//! (`cgmalloc set`), and its application at the process's next charge-path step.
//!
//! The request area is a static the layout record points to (`layout.rs`); a reader
//! writes it with `process_vm_writev`: the body (group path, file, value, their lengths
//! and a check of them all with the token) first, then `token`, a number it chose. The
//! process notices a token it has not answered at the entry of the charge path's slow
//! part (`charge::try_charge_slow`), which runs without any lock and may run reclaim,
//! copies the body, checks it, applies it as `cgm_group_write` would (the installed
//! [`APPLY`] hook, `memcg::control`) and answers: `result` (0 or a negative errno), then
//! `done = token`. So a value written from outside takes effect at the process's next
//! charge that its stock does not serve, as a limit written to cgroupfs does.
//!
//! Invariants: a request is applied once (the token is answered before another is taken,
//! and one thread applies at a time); a body whose check fails is answered `-EBADMSG`
//! and changes nothing (two writers at once); nothing here allocates.
//!
//! Its format and check are `wire.rs`'s, which the launcher compiles too.

#![forbid(unsafe_code)]

use super::wire::{self, BODY_LEN, FILE_MAX, GROUP_MAX, VALUE_MAX};
use crate::util::hook::Hook;
use core::mem::offset_of;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};

#[repr(C)]
pub struct Request {
    pub token: AtomicU64,
    pub done: AtomicU64,
    pub result: AtomicI64,
    pub check: AtomicU64,
    pub group_len: AtomicU32,
    pub file_len: AtomicU32,
    pub value_len: AtomicU32,
    _pad: u32,
    pub body: [AtomicU8; BODY_LEN],
}

const _: () = assert!(
    offset_of!(Request, token) == wire::TOKEN
        && offset_of!(Request, done) == wire::DONE
        && offset_of!(Request, result) == wire::RESULT
        && offset_of!(Request, check) == wire::CHECK
        && offset_of!(Request, group_len) == wire::LENS
        && offset_of!(Request, body) == wire::BODY
);

/// The process's request area.
pub(super) static REQUEST: Request = Request {
    token: AtomicU64::new(0),
    done: AtomicU64::new(0),
    result: AtomicI64::new(0),
    check: AtomicU64::new(0),
    group_len: AtomicU32::new(0),
    file_len: AtomicU32::new(0),
    value_len: AtomicU32::new(0),
    _pad: 0,
    body: [const { AtomicU8::new(0) }; BODY_LEN],
};

/// `fn(group path, file, value) -> 0 or a negative errno`, installed by `memcg::control`.
pub type ApplyFn = fn(&[u8], &[u8], &[u8]) -> i64;
pub static APPLY: Hook<ApplyFn> = Hook::new();

/// Held by the thread applying a request.
static APPLYING: AtomicBool = AtomicBool::new(false);

/// Whether a request waits: one load each of two words the process alone answers.
#[inline]
pub fn pending() -> bool {
    let t = REQUEST.token.load(Ordering::Relaxed);
    t != 0 && t != REQUEST.done.load(Ordering::Relaxed)
}

/// Applies the waiting request, if any and if no other thread is applying one.
#[cold]
pub fn apply_pending() {
    let Some(apply) = APPLY.get() else {
        return;
    };
    if APPLYING.swap(true, Ordering::Acquire) {
        return;
    }
    let r = &REQUEST;
    let token = r.token.load(Ordering::Acquire);
    if token != 0 && token != r.done.load(Ordering::Relaxed) {
        let mut body = [0u8; BODY_LEN];
        for (b, a) in body.iter_mut().zip(&r.body) {
            *b = a.load(Ordering::Relaxed);
        }
        let lens = [
            r.group_len.load(Ordering::Relaxed),
            r.file_len.load(Ordering::Relaxed),
            r.value_len.load(Ordering::Relaxed),
        ];
        let result = if lens[0] as usize > GROUP_MAX
            || lens[1] as usize > FILE_MAX
            || lens[2] as usize > VALUE_MAX
        {
            -(libc::EBADMSG as i64)
        } else {
            let group = &body[..lens[0] as usize];
            let file = &body[GROUP_MAX..GROUP_MAX + lens[1] as usize];
            let value = &body[GROUP_MAX + FILE_MAX..GROUP_MAX + FILE_MAX + lens[2] as usize];
            let want = wire::request_check(token, group, file, value);
            if want != r.check.load(Ordering::Relaxed) {
                -(libc::EBADMSG as i64)
            } else {
                apply(group, file, value)
            }
        };
        r.result.store(result, Ordering::Relaxed);
        r.done.store(token, Ordering::Release);
    }
    APPLYING.store(false, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A request as the hook saw it: group, file, value.
    type Seen = (Vec<u8>, Vec<u8>, Vec<u8>);
    static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

    fn record(g: &[u8], f: &[u8], v: &[u8]) -> i64 {
        SEEN.lock()
            .unwrap()
            .push((g.to_vec(), f.to_vec(), v.to_vec()));
        -(libc::ENOENT as i64)
    }

    /// Writes a request as `cgmalloc set` does; `spoil` breaks its check.
    fn post(token: u64, g: &[u8], f: &[u8], v: &[u8], spoil: bool) {
        let r = &REQUEST;
        for (i, b) in g.iter().enumerate() {
            r.body[i].store(*b, Ordering::Relaxed);
        }
        for (i, b) in f.iter().enumerate() {
            r.body[GROUP_MAX + i].store(*b, Ordering::Relaxed);
        }
        for (i, b) in v.iter().enumerate() {
            r.body[GROUP_MAX + FILE_MAX + i].store(*b, Ordering::Relaxed);
        }
        let lens = [g.len() as u32, f.len() as u32, v.len() as u32];
        r.group_len.store(lens[0], Ordering::Relaxed);
        r.file_len.store(lens[1], Ordering::Relaxed);
        r.value_len.store(lens[2], Ordering::Relaxed);
        let check = wire::request_check(token, g, f, v);
        r.check.store(check ^ spoil as u64, Ordering::Relaxed);
        r.token.store(token, Ordering::Release);
    }

    #[test]
    fn a_request_is_applied_once_and_a_spoilt_one_never() {
        APPLY.install(record);
        assert!(!pending());
        post(7, b"/a", b"memory.max", b"8M", true);
        assert!(pending());
        apply_pending();
        assert!(!pending());
        assert_eq!(REQUEST.done.load(Ordering::Relaxed), 7);
        assert_eq!(
            REQUEST.result.load(Ordering::Relaxed),
            -(libc::EBADMSG as i64)
        );
        assert!(SEEN.lock().unwrap().is_empty());

        post(9, b"/a/b", b"memory.high", b"max", false);
        apply_pending();
        apply_pending();
        assert_eq!(REQUEST.done.load(Ordering::Relaxed), 9);
        assert_eq!(
            REQUEST.result.load(Ordering::Relaxed),
            -(libc::ENOENT as i64)
        );
        let seen = SEEN.lock().unwrap();
        assert_eq!(
            *seen,
            vec![(b"/a/b".to_vec(), b"memory.high".to_vec(), b"max".to_vec())]
        );
    }
}
