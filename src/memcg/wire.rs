//! What the process and a reader in another process (the launcher's `stat`, `top` and
//! `set`) must agree on beyond the layout record (`layout.rs`): the request area's format
//! and check, and the names of `memory.enforce`'s modes. The launcher compiles this file
//! (it does not link the library), so both sides read one definition.
//!
//! Request area (layout version 1): `token`, `done`, `result` (an `i64`), `check`, then
//! `group_len`, `file_len`, `value_len` (`u32`s) and 4 bytes of padding, then the group
//! path (`GROUP_MAX` bytes), the file name (`FILE_MAX`) and the value (`VALUE_MAX`). A
//! writer writes the body, then `check` and the lengths, then `token`; the process
//! answers `result`, then `done = token`.

#![forbid(unsafe_code)]

use crate::consts::{MAX_DEPTH, NAME_MAX};

/// Byte offsets in the request area.
pub const TOKEN: usize = 0;
pub const DONE: usize = 8;
pub const RESULT: usize = 16;
pub const CHECK: usize = 24;
/// `group_len`, `file_len`, `value_len`.
pub const LENS: usize = 32;
pub const BODY: usize = 48;

/// Bytes of a group path: `/name` per level.
pub const GROUP_MAX: usize = MAX_DEPTH * (NAME_MAX + 1);
pub const FILE_MAX: usize = 32;
pub const VALUE_MAX: usize = 64;
/// Bytes of the body: group, file and value, each at its fixed place.
pub const BODY_LEN: usize = GROUP_MAX + FILE_MAX + VALUE_MAX;

/// `memory.enforce` values, indexed by the mode's number (`counter::ENFORCE_*`).
pub const ENFORCE_NAMES: [&str; 3] = ["on", "warn", "off"];

/// The check of a request: FNV-1a 64 over `token`'s 8 bytes, the three lengths as 4
/// bytes each, then the group, file and value.
pub fn request_check(token: u64, group: &[u8], file: &[u8], value: &[u8]) -> u64 {
    let lens = [group.len() as u32, file.len() as u32, value.len() as u32];
    let parts: [&[u8]; 7] = [
        &token.to_le_bytes(),
        &lens[0].to_le_bytes(),
        &lens[1].to_le_bytes(),
        &lens[2].to_le_bytes(),
        group,
        file,
        value,
    ];
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}
