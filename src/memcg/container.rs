//! Container awareness (INTERFACE.md "Container awareness"): the memory limit of the
//! cgroup the process runs in, read once at library start, outside malloc (so `std::fs`,
//! `Vec` and `PathBuf` are fine here).
//!
//! What it reads, under a root that is `/` for real and a fixture directory in tests:
//! - `proc/self/cgroup`, lines `hierarchy-id:controllers:path`. The cgroup v2 line is
//!   `0::/path`; a cgroup v1 memory line has `memory` in its comma separated controller
//!   list (`4:memory:/path`, `7:cpu,memory:/path`).
//! - `proc/self/mountinfo`, lines `id parent major:minor ROOT MOUNTPOINT options
//!   [optional...] - FSTYPE SOURCE SUPEROPTS`. A v2 mount has FSTYPE `cgroup2`; a v1
//!   memory mount has FSTYPE `cgroup` and `memory` among its SUPEROPTS. ROOT and
//!   MOUNTPOINT have their octal escapes (`\040` for a space) decoded.
//! - the limit files of every group from the process's own up to the mount point,
//!   inclusive: v2 `memory.max` and `memory.high`, v1 `memory.limit_in_bytes` (soft limits
//!   and `memsw` are left out).
//!
//! The rules:
//! - The process's directory is MOUNTPOINT joined with its cgroup path less the mount's
//!   ROOT (ROOT is the cgroup the mount shows at its mount point: `/` in a cgroup
//!   namespace, `/docker/abc` on some hosts). A path not under ROOT, or with a `.` or `..`
//!   component (a namespace shows `/..` for a group outside it), maps to the mount point
//!   itself. Of several mounts of one hierarchy, the first that holds the path is used.
//! - On a hybrid host (a `0::` line and v1 lines) both hierarchies are walked; the one
//!   without memory controller files contributes nothing.
//! - The limit is the smallest finite value over all levels, files and hierarchies; on a
//!   tie the first found wins (v2 before v1, deepest level first, `memory.max` before
//!   `memory.high`).
//! - No limit: the word `max` (v2), and any value of 2^62 bytes or more (v1 reports
//!   unlimited as 9223372036854771712, `PAGE_COUNTER_MAX` pages; no machine has 4 EiB, so
//!   the same bound is applied to v2). A value of 0 is skipped as no information: as a
//!   container limit it would make every `N%` zero.
//! - Missing or unreadable files, malformed lines and garbage values (`abc`, `-1`, an
//!   overflowing number, a file longer than 64 bytes) are skipped; nothing here panics.
//!   The tables are read up to 4 MiB (mountinfo is long on busy hosts); past that only
//!   the complete lines read are parsed.
//! - `proc/meminfo`'s `MemTotal` is what `N%` means without a container limit.
//! - No `proc/self/cgroup`, or a mountinfo without cgroup mounts: no limit. Without a
//!   readable `proc/self/mountinfo` the conventional layout is assumed, both with ROOT
//!   `/`: v2 mounted at `/sys/fs/cgroup` and v1 memory at `/sys/fs/cgroup/memory`.

#![forbid(unsafe_code)]

use std::ffi::OsStr;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Read bound for `proc/self/cgroup` and `proc/self/mountinfo`.
const TABLE_CAP: usize = 4 << 20;
/// Read bound for one limit file; a longer file is garbage.
const LIMIT_FILE_CAP: usize = 64;
/// Values from here up mean no limit (v1 reports unlimited as `PAGE_COUNTER_MAX * 4096`).
const UNLIMITED_FROM: u64 = 1 << 62;
/// A cgroup path longer than `PATH_MAX` is garbage.
const PATH_CAP: usize = 4096;

/// The two cgroup hierarchies and their limit files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    V1,
    V2,
}

impl Hierarchy {
    /// The limit files read at each level, in tie-break order.
    fn limit_files(self) -> &'static [&'static str] {
        match self {
            Hierarchy::V1 => &["memory.limit_in_bytes"],
            Hierarchy::V2 => &["memory.max", "memory.high"],
        }
    }
}

/// The container limit and the file it came from (for messages and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Bytes, finite and nonzero.
    pub bytes: u64,
    /// The file, under the probed root.
    pub file: PathBuf,
    pub hierarchy: Hierarchy,
}

/// The process's place in each hierarchy, from `proc/self/cgroup`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Membership {
    v2: Option<Vec<u8>>,
    v1_memory: Option<Vec<u8>>,
}

/// One cgroup mount from `proc/self/mountinfo`, escapes decoded.
#[derive(Debug, PartialEq, Eq)]
struct Mount {
    hierarchy: Hierarchy,
    /// The cgroup path shown at the mount point.
    root: Vec<u8>,
    /// Absolute, on the probed filesystem.
    mount_point: Vec<u8>,
}

/// The container limit seen from a filesystem rooted at `root` (tests pass a fixture dir;
/// the real one is "/").
pub fn probe_at(root: &Path) -> Option<u64> {
    probe_limit_at(root).map(|l| l.bytes)
}

/// The machine's memory: `MemTotal` of `proc/meminfo` under `root`, in bytes; `None`
/// if the file or the line is missing or malformed.
pub fn mem_total_at(root: &Path) -> Option<u64> {
    let text = read_capped(&root.join("proc/meminfo"), TABLE_CAP)?;
    parse_mem_total(&text)
}

/// `MemTotal:       16318256 kB` → bytes.
fn parse_mem_total(meminfo: &[u8]) -> Option<u64> {
    let line = meminfo
        .split(|&b| b == b'\n')
        .find_map(|l| l.strip_prefix(b"MemTotal:"))?;
    let kb = line.trim_ascii().strip_suffix(b"kB")?.trim_ascii();
    parse_limit(kb)?.checked_mul(1024)
}

/// Like `probe_at`, and says which file gave the limit.
pub fn probe_limit_at(root: &Path) -> Option<Limit> {
    let cgroup = read_table(&root.join("proc/self/cgroup"))?;
    let membership = parse_cgroup_file(&cgroup);
    let mounts = match read_table(&root.join("proc/self/mountinfo")) {
        Some(text) => parse_mountinfo(&text),
        None => conventional_mounts(),
    };
    let mut best: Option<Limit> = None;
    for (hierarchy, path) in [
        (Hierarchy::V2, &membership.v2),
        (Hierarchy::V1, &membership.v1_memory),
    ] {
        let Some(path) = path else { continue };
        let Some(dirs) = group_dirs(root, &mounts, hierarchy, path) else {
            continue;
        };
        if let Some(found) = walk(&dirs, hierarchy) {
            keep_smaller(&mut best, found);
        }
    }
    best
}

/// Reads a table file up to `TABLE_CAP`; past the cap the trailing partial line is dropped.
fn read_table(path: &Path) -> Option<Vec<u8>> {
    let mut buf = read_capped(path, TABLE_CAP)?;
    if buf.len() > TABLE_CAP {
        buf.truncate(TABLE_CAP);
        let end = buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        buf.truncate(end);
    }
    Some(buf)
}

/// Reads at most `cap + 1` bytes, so that the caller can tell an overlong file.
///
/// The buffer starts at one page (or the cap), not empty: grown from empty it would pass
/// through every small size class on the way, and each class's first block costs the
/// process a span at start-up.
fn read_capped(path: &Path, cap: usize) -> Option<Vec<u8>> {
    const START: usize = 4096;
    let file = File::open(path).ok()?;
    let mut buf = Vec::with_capacity(START.min(cap + 1));
    file.take(cap as u64 + 1).read_to_end(&mut buf).ok()?;
    Some(buf)
}

/// Parses `proc/self/cgroup`; malformed lines are skipped, the first match of each kind
/// is kept.
fn parse_cgroup_file(text: &[u8]) -> Membership {
    let mut m = Membership::default();
    for line in text.split(|&b| b == b'\n') {
        let mut parts = line.splitn(3, |&b| b == b':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !path.starts_with(b"/") || path.len() > PATH_CAP {
            continue;
        }
        if id == b"0" && controllers.is_empty() {
            m.v2.get_or_insert_with(|| path.to_vec());
        } else if controllers.split(|&b| b == b',').any(|c| c == b"memory") {
            m.v1_memory.get_or_insert_with(|| path.to_vec());
        }
    }
    m
}

/// Parses `proc/self/mountinfo`, keeping the cgroup2 mounts and the v1 memory mounts.
fn parse_mountinfo(text: &[u8]) -> Vec<Mount> {
    text.split(|&b| b == b'\n')
        .filter_map(parse_mount_line)
        .collect()
}

fn parse_mount_line(line: &[u8]) -> Option<Mount> {
    let fields: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|f| !f.is_empty())
        .collect();
    // Six fixed fields, then optional fields up to the `-` separator.
    let sep = 6 + fields.get(6..)?.iter().position(|&f| f == b"-")?;
    let fstype = *fields.get(sep + 1)?;
    let superopts = fields.get(sep + 3).copied().unwrap_or(b"");
    let hierarchy = match fstype {
        b"cgroup2" => Hierarchy::V2,
        b"cgroup" if superopts.split(|&b| b == b',').any(|o| o == b"memory") => Hierarchy::V1,
        _ => return None,
    };
    let root = unescape(fields[3]);
    let mount_point = unescape(fields[4]);
    if !root.starts_with(b"/") || !mount_point.starts_with(b"/") {
        return None;
    }
    Some(Mount {
        hierarchy,
        root,
        mount_point,
    })
}

/// Decodes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134`
/// backslash); anything else is kept as it is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if let Some(&[b'\\', a, b, c]) = field.get(i..i + 4) {
            let octal = |d: u8| (b'0'..=b'7').contains(&d).then(|| (d - b'0') as u32);
            if let (Some(a), Some(b), Some(c)) = (octal(a), octal(b), octal(c)) {
                if let Ok(byte) = u8::try_from(a * 64 + b * 8 + c) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// The layout assumed when mountinfo cannot be read.
fn conventional_mounts() -> Vec<Mount> {
    vec![
        Mount {
            hierarchy: Hierarchy::V2,
            root: b"/".to_vec(),
            mount_point: b"/sys/fs/cgroup".to_vec(),
        },
        Mount {
            hierarchy: Hierarchy::V1,
            root: b"/".to_vec(),
            mount_point: b"/sys/fs/cgroup/memory".to_vec(),
        },
    ]
}

/// The non-empty components of a cgroup path.
fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// The components of `path` below `root`, or `None` if `path` is not under `root` or would
/// leave it through `.` or `..`.
fn relative_to<'a>(path: &'a [u8], root: &[u8]) -> Option<Vec<&'a [u8]>> {
    let mut rest = components(path);
    for r in components(root) {
        if rest.next()? != r {
            return None;
        }
    }
    let rest: Vec<&[u8]> = rest.collect();
    if rest.iter().any(|&c| c == b"." || c == b"..") {
        return None;
    }
    Some(rest)
}

/// The directories to read for a hierarchy, the process's own first, up to and including
/// the mount point; `None` without a mount of that hierarchy.
fn group_dirs(
    root: &Path,
    mounts: &[Mount],
    hierarchy: Hierarchy,
    path: &[u8],
) -> Option<Vec<PathBuf>> {
    let mut candidates = mounts.iter().filter(|m| m.hierarchy == hierarchy);
    let first = candidates.clone().next()?;
    let (mount, below) = candidates
        .find_map(|m| relative_to(path, &m.root).map(|rel| (m, rel)))
        .unwrap_or((first, Vec::new()));
    let mut dir = root.to_path_buf();
    for c in components(&mount.mount_point) {
        dir.push(OsStr::from_bytes(c));
    }
    let mut dirs = vec![dir.clone()];
    for c in below {
        dir.push(OsStr::from_bytes(c));
        dirs.push(dir.clone());
    }
    dirs.reverse();
    Some(dirs)
}

/// The smallest finite limit over the directories, the first found on a tie.
fn walk(dirs: &[PathBuf], hierarchy: Hierarchy) -> Option<Limit> {
    let mut best: Option<Limit> = None;
    for dir in dirs {
        for name in hierarchy.limit_files() {
            let file = dir.join(name);
            let Some(bytes) = limit_of_file(&file) else {
                continue;
            };
            keep_smaller(
                &mut best,
                Limit {
                    bytes,
                    file,
                    hierarchy,
                },
            );
        }
    }
    best
}

/// Keeps `found` if it is strictly smaller than the best so far (the first wins a tie).
fn keep_smaller(best: &mut Option<Limit>, found: Limit) {
    if best.as_ref().map_or(true, |b| found.bytes < b.bytes) {
        *best = Some(found);
    }
}

/// A finite, nonzero limit from one file; `None` for a missing file, no limit, 0 or
/// garbage.
fn limit_of_file(path: &Path) -> Option<u64> {
    let buf = read_capped(path, LIMIT_FILE_CAP)?;
    if buf.len() > LIMIT_FILE_CAP {
        return None;
    }
    parse_limit(&buf)
}

/// Parses a limit file's content: decimal bytes, or `max`.
fn parse_limit(content: &[u8]) -> Option<u64> {
    let text = content.trim_ascii();
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None; // `max`, `-1`, `abc`, empty
    }
    let value = text.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add((d - b'0') as u64)
    })?;
    (value != 0 && value < UNLIMITED_FROM).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_octal() {
        assert_eq!(unescape(br"/sys/fs/my\040cgroup"), b"/sys/fs/my cgroup");
        assert_eq!(unescape(br"a\134b\011c"), b"a\\b\tc");
        assert_eq!(unescape(br"\777\08\04"), br"\777\08\04");
        assert_eq!(unescape(br"end\"), br"end\");
    }

    #[test]
    fn relative_paths() {
        let rel = relative_to;
        assert_eq!(rel(b"/a/b", b"/"), Some(vec![&b"a"[..], b"b"]));
        assert_eq!(
            rel(b"/docker/abc/sub", b"/docker/abc"),
            Some(vec![&b"sub"[..]])
        );
        assert_eq!(rel(b"/docker/abc", b"/docker/abc/"), Some(vec![]));
        assert_eq!(rel(b"/docker/abcdef", b"/docker/abc"), None);
        assert_eq!(rel(b"/docker", b"/docker/abc"), None);
        assert_eq!(rel(b"/../x", b"/"), None);
    }

    #[test]
    fn mem_total() {
        let m = b"MemFree:  10 kB\nMemTotal:       16318256 kB\nBuffers: 1 kB\n";
        assert_eq!(parse_mem_total(m), Some(16318256 * 1024));
        for bad in [
            &b"MemFree: 10 kB\n"[..],
            b"MemTotal: kB\n",
            b"MemTotal: 12 MB\n",
        ] {
            assert_eq!(parse_mem_total(bad), None);
        }
    }

    #[test]
    fn limit_values() {
        assert_eq!(parse_limit(b"536870912\n"), Some(536870912));
        assert_eq!(parse_limit(b" 4096 "), Some(4096));
        for bad in [
            &b"max\n"[..],
            b"0\n",
            b"",
            b"\n",
            b"-1",
            b"+5",
            b"abc",
            b"12 34",
            b"9223372036854771712\n",
            b"4611686018427387904",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_limit(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_limit(b"4611686018427387903"), Some((1 << 62) - 1));
    }
}
