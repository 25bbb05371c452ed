//! `Error`: a failed control call, carrying the positive errno that the C API returns
//! negated, and the one text table behind both `Display` and `cgm_strerror`.

#![forbid(unsafe_code)]

use core::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Error {
    errno: i32,
}

pub type Result<T> = core::result::Result<T, Error>;

impl Error {
    pub fn from_errno(errno: i32) -> Error {
        Error { errno: errno.abs() }
    }

    /// The positive errno.
    pub fn errno(&self) -> i32 {
        self.errno
    }
}

/// The meaning of an errno as cgmalloc uses it (either sign accepted), NUL-terminated
/// for C.
pub fn describe(errno: i32) -> &'static str {
    match errno.unsigned_abs() as i32 {
        0 => "success\0",
        libc::ENOENT => "no such group (invalid, destroyed or unknown handle or path)\0",
        libc::EEXIST => "group already exists\0",
        libc::EINVAL => "invalid argument\0",
        libc::ENOSPC => "no space left in the group, callback or threshold table\0",
        libc::EBUSY => "group has children or attached threads\0",
        libc::EPERM => "operation not permitted on the root group\0",
        libc::EACCES => "interface file cannot be accessed that way\0",
        libc::ENOMEM => "charge refused: out of memory in the group\0",
        libc::EAGAIN => "reclaim freed less than asked\0",
        libc::EMFILE | libc::ENFILE => "too many open files\0",
        _ => "unknown error\0",
    }
}

/// [`describe`] without the NUL, for Rust text.
pub fn text(errno: i32) -> &'static str {
    let t = describe(errno);
    &t[..t.len() - 1]
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (errno {})", text(self.errno), self.errno)
    }
}

impl std::error::Error for Error {}
