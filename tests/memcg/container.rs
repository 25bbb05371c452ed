//! Container awareness: `memcg::container::probe_at` on fixture trees, never the machine's
//! own cgroup (except one smoke test that `probe()` does not panic).
//!
//! Each test builds its tree in a fresh directory under `CARGO_TARGET_TMPDIR`: a
//! `proc/self/cgroup`, a `proc/self/mountinfo` made of the `v2`/`v1` mount lines below,
//! and the limit files of the cgroup directories.

use cgmalloc::internals::memcg::container::{self, Hierarchy};
use std::fs;
use std::path::{Path, PathBuf};

const M: u64 = 1 << 20;
const G: u64 = 1 << 30;
/// What v1 reports for an unlimited group (`PAGE_COUNTER_MAX * 4096`).
const V1_UNLIMITED: &str = "9223372036854771712\n";

/// Mounts that are not cgroups, present on every host, to be skipped.
const OTHER_MOUNTS: &str = "\
22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
23 1 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
";

/// A cgroup2 mount line; `mount_point` is written as mountinfo escapes it.
fn v2(root: &str, mount_point: &str) -> String {
    format!("41 31 0:38 {root} {mount_point} rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n")
}

/// A cgroup v1 mount line with the given controllers.
fn v1(root: &str, mount_point: &str, controllers: &str) -> String {
    format!("35 31 0:32 {root} {mount_point} rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,{controllers}\n")
}

struct Fixture {
    root: PathBuf,
}

impl Fixture {
    /// An empty tree for test `name`.
    fn new(name: &str) -> Fixture {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("container")
            .join(name);
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        Fixture { root }
    }

    /// Writes `content` at `path` (absolute on the fixture's filesystem), creating parents.
    fn file(&self, path: &str, content: &str) -> &Fixture {
        let path = self.root.join(path.trim_start_matches('/'));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        self
    }

    fn cgroup(&self, content: &str) -> &Fixture {
        self.file("/proc/self/cgroup", content)
    }

    /// Writes mountinfo: the non-cgroup mounts, then `mounts`.
    fn mountinfo(&self, mounts: &str) -> &Fixture {
        self.file("/proc/self/mountinfo", &format!("{OTHER_MOUNTS}{mounts}"))
    }

    /// A group directory without limit files.
    fn dir(&self, path: &str) -> &Fixture {
        fs::create_dir_all(self.root.join(path.trim_start_matches('/'))).unwrap();
        self
    }

    fn probe(&self) -> Option<u64> {
        container::probe_at(&self.root)
    }

    /// The file that gave the limit, relative to the fixture root.
    fn source(&self) -> Option<(PathBuf, Hierarchy)> {
        let limit = container::probe_limit_at(&self.root)?;
        let file = limit.file.strip_prefix(&self.root).unwrap().to_path_buf();
        Some((file, limit.hierarchy))
    }

    /// The probe finds `bytes`, read from `file` (relative to the fixture root) of
    /// `hierarchy`.
    #[track_caller]
    fn assert_limit(&self, bytes: u64, file: &str, hierarchy: Hierarchy) {
        assert_eq!(self.probe(), Some(bytes));
        assert_eq!(self.source(), Some((file.into(), hierarchy)));
    }
}

/// The content of a limit file holding `n` bytes.
fn bytes(n: u64) -> String {
    format!("{n}\n")
}

/// A cgroup v2 only host or container: `0::<path>` and one cgroup2 mount at /sys/fs/cgroup.
fn v2_fixture(name: &str, path: &str) -> Fixture {
    v2_fixture_with_root(name, path, "/")
}

/// [`v2_fixture`] with the mount showing `mount_root` (ROOT in mountinfo) rather than `/`.
fn v2_fixture_with_root(name: &str, path: &str, mount_root: &str) -> Fixture {
    let f = Fixture::new(name);
    f.cgroup(&format!("0::{path}\n"))
        .mountinfo(&v2(mount_root, "/sys/fs/cgroup"));
    f
}

#[test]
fn v2_simple() {
    let f = v2_fixture("v2_simple", "/");
    f.file("/sys/fs/cgroup/memory.max", "536870912\n")
        .file("/sys/fs/cgroup/memory.high", "max\n");
    f.assert_limit(512 * M, "sys/fs/cgroup/memory.max", Hierarchy::V2);
}

#[test]
fn v2_nested_smallest_deepest() {
    let f = v2_fixture("v2_nested_smallest_deepest", "/a/b/c");
    f.file("/sys/fs/cgroup/memory.max", "max\n")
        .file("/sys/fs/cgroup/a/memory.max", &bytes(G))
        .file("/sys/fs/cgroup/a/b/memory.max", "max\n")
        .file("/sys/fs/cgroup/a/b/c/memory.max", &bytes(256 * M));
    assert_eq!(f.probe(), Some(256 * M));
}

#[test]
fn v2_nested_smallest_at_ancestor() {
    let f = v2_fixture("v2_nested_smallest_at_ancestor", "/a/b/c");
    f.file("/sys/fs/cgroup/a/memory.max", &bytes(128 * M))
        .file("/sys/fs/cgroup/a/b/memory.max", "max\n")
        .file("/sys/fs/cgroup/a/b/c/memory.max", &bytes(256 * M))
        .file("/sys/fs/cgroup/a/b/c/memory.high", &bytes(200 * M));
    f.assert_limit(128 * M, "sys/fs/cgroup/a/memory.max", Hierarchy::V2);
}

#[test]
fn v2_high_below_max() {
    let f = v2_fixture("v2_high_below_max", "/app");
    f.file("/sys/fs/cgroup/app/memory.max", &bytes(G))
        .file("/sys/fs/cgroup/app/memory.high", &bytes(768 * M));
    f.assert_limit(768 * M, "sys/fs/cgroup/app/memory.high", Hierarchy::V2);
}

#[test]
fn v2_unlimited_everywhere() {
    let f = v2_fixture("v2_unlimited_everywhere", "/a/b");
    for dir in ["", "/a", "/a/b"] {
        f.file(&format!("/sys/fs/cgroup{dir}/memory.max"), "max\n")
            .file(&format!("/sys/fs/cgroup{dir}/memory.high"), "max\n");
    }
    assert_eq!(f.probe(), None);
}

#[test]
fn v1_limit() {
    let f = Fixture::new("v1_limit");
    f.cgroup("5:devices:/docker/x\n4:memory:/docker/x\n3:cpu,cpuacct:/docker/x\n")
        .mountinfo(
            &(v1("/", "/sys/fs/cgroup/memory", "memory")
                + &v1("/", "/sys/fs/cgroup/cpu,cpuacct", "cpu,cpuacct")),
        )
        .file("/sys/fs/cgroup/memory/memory.limit_in_bytes", V1_UNLIMITED)
        .file(
            "/sys/fs/cgroup/memory/docker/memory.limit_in_bytes",
            V1_UNLIMITED,
        )
        .file(
            "/sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes",
            "1073741824\n",
        )
        // Limits in another controller's hierarchy are not memory limits.
        .file(
            "/sys/fs/cgroup/cpu,cpuacct/docker/x/memory.limit_in_bytes",
            "4096\n",
        );
    f.assert_limit(
        G,
        "sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes",
        Hierarchy::V1,
    );
}

#[test]
fn v1_unlimited_sentinel() {
    let f = Fixture::new("v1_unlimited_sentinel");
    f.cgroup("4:memory:/docker/x\n")
        .mountinfo(&v1("/", "/sys/fs/cgroup/memory", "memory"))
        .file("/sys/fs/cgroup/memory/memory.limit_in_bytes", V1_UNLIMITED)
        .file(
            "/sys/fs/cgroup/memory/docker/x/memory.limit_in_bytes",
            V1_UNLIMITED,
        );
    assert_eq!(f.probe(), None);
}

#[test]
fn v1_joint_controllers() {
    let f = Fixture::new("v1_joint_controllers");
    f.cgroup("7:cpu,memory:/job\n")
        .mountinfo(&v1("/", "/sys/fs/cgroup/cpu,memory", "cpu,memory"))
        .file(
            "/sys/fs/cgroup/cpu,memory/job/memory.limit_in_bytes",
            &bytes(300 * M),
        );
    assert_eq!(f.probe(), Some(300 * M));
}

#[test]
fn hybrid_v1_limit_unified_without_memory_files() {
    let f = Fixture::new("hybrid_v1_limit_unified_without_memory_files");
    f.cgroup("4:memory:/svc\n1:name=systemd:/svc\n0::/svc\n")
        .mountinfo(
            &(v1("/", "/sys/fs/cgroup/memory", "memory") + &v2("/", "/sys/fs/cgroup/unified")),
        )
        .file(
            "/sys/fs/cgroup/memory/svc/memory.limit_in_bytes",
            &bytes(2 * G),
        )
        .file("/sys/fs/cgroup/unified/svc/cgroup.procs", "1\n");
    assert_eq!(f.probe(), Some(2 * G));
}

#[test]
fn hybrid_both_give_limits() {
    // Both hierarchies show /svc; v1 limits it to 2 GiB.
    let hybrid = |name: &str| {
        let f = Fixture::new(name);
        f.cgroup("0::/svc\n4:memory:/svc\n")
            .mountinfo(
                &(v2("/", "/sys/fs/cgroup/unified") + &v1("/", "/sys/fs/cgroup/memory", "memory")),
            )
            .file(
                "/sys/fs/cgroup/memory/svc/memory.limit_in_bytes",
                &bytes(2 * G),
            );
        f
    };
    let f = hybrid("hybrid_both_give_limits");
    f.file("/sys/fs/cgroup/unified/svc/memory.max", &bytes(3 * G));
    f.assert_limit(
        2 * G,
        "sys/fs/cgroup/memory/svc/memory.limit_in_bytes",
        Hierarchy::V1,
    );

    let f = hybrid("hybrid_both_give_limits_v2_smaller");
    f.file("/sys/fs/cgroup/unified/svc/memory.high", &bytes(G));
    assert_eq!(f.probe(), Some(G));
}

#[test]
fn mount_root_not_slash() {
    // The mount shows /docker/abc at /sys/fs/cgroup; the process is in /docker/abc/sub.
    let f = v2_fixture_with_root("mount_root_not_slash", "/docker/abc/sub", "/docker/abc");
    f.file("/sys/fs/cgroup/memory.max", &bytes(G))
        .file("/sys/fs/cgroup/sub/memory.max", &bytes(640 * M))
        // Would be read if ROOT were ignored.
        .file("/sys/fs/cgroup/docker/abc/sub/memory.max", "4096\n");
    f.assert_limit(640 * M, "sys/fs/cgroup/sub/memory.max", Hierarchy::V2);
}

#[test]
fn path_not_under_mount_root_falls_back_to_mount_point() {
    // `/docker/abcdef` shares a prefix with ROOT `/docker/abc` but is not under it.
    let f = v2_fixture_with_root("path_not_under_mount_root", "/docker/abcdef", "/docker/abc");
    f.file("/sys/fs/cgroup/memory.max", &bytes(G))
        .file("/sys/fs/cgroup/def/memory.max", "4096\n");
    assert_eq!(f.probe(), Some(G));

    // A namespace shows a group outside it as `/..`: that must not climb out either.
    let f = v2_fixture("path_with_dot_dot", "/../outside");
    f.file("/sys/fs/cgroup/memory.max", &bytes(G))
        .file("/sys/fs/outside/memory.max", "4096\n");
    assert_eq!(f.probe(), Some(G));
}

#[test]
fn first_mount_holding_the_path_is_used() {
    // Two cgroup2 mounts: the first shows another subtree, the second the process's.
    let f = Fixture::new("first_mount_holding_the_path");
    f.cgroup("0::/pod/app\n")
        .mountinfo(&(v2("/other", "/mnt/other") + &v2("/pod", "/sys/fs/cgroup")))
        .file("/mnt/other/memory.max", "4096\n")
        .file("/sys/fs/cgroup/app/memory.max", &bytes(100 * M));
    assert_eq!(f.probe(), Some(100 * M));
}

#[test]
fn namespace_with_escaped_mount_point() {
    let f = Fixture::new("namespace_with_escaped_mount_point");
    f.cgroup("0::/\n")
        .mountinfo(&v2("/", r"/sys/fs/my\040cgroup"))
        .file("/sys/fs/my cgroup/memory.max", &bytes(64 * M));
    f.assert_limit(64 * M, "sys/fs/my cgroup/memory.max", Hierarchy::V2);
}

#[test]
fn no_limit_files() {
    let f = v2_fixture("no_limit_files", "/a/b");
    f.dir("/sys/fs/cgroup/a/b")
        .file("/sys/fs/cgroup/a/b/cgroup.procs", "1\n");
    assert_eq!(f.probe(), None);
}

#[test]
fn missing_cgroup_file() {
    let f = Fixture::new("missing_cgroup_file");
    f.mountinfo(&v2("/", "/sys/fs/cgroup"))
        .file("/sys/fs/cgroup/memory.max", &bytes(G));
    assert_eq!(f.probe(), None);
}

#[test]
fn missing_mountinfo_without_sys_fs_cgroup() {
    let f = Fixture::new("missing_mountinfo_without_sys_fs_cgroup");
    f.cgroup("0::/a\n");
    assert_eq!(f.probe(), None);
}

#[test]
fn missing_mountinfo_falls_back_to_sys_fs_cgroup() {
    // Documented fallback: v2 at /sys/fs/cgroup, ROOT `/`.
    let f = Fixture::new("missing_mountinfo_v2_fallback");
    f.cgroup("0::/a\n")
        .file("/sys/fs/cgroup/memory.max", &bytes(2 * G))
        .file("/sys/fs/cgroup/a/memory.max", &bytes(G));
    assert_eq!(f.probe(), Some(G));

    // And v1 memory at /sys/fs/cgroup/memory.
    let f = Fixture::new("missing_mountinfo_v1_fallback");
    f.cgroup("4:memory:/a\n")
        .file("/sys/fs/cgroup/memory/a/memory.limit_in_bytes", &bytes(G));
    assert_eq!(f.probe(), Some(G));
}

#[test]
fn no_cgroup_mounts() {
    let f = Fixture::new("no_cgroup_mounts");
    f.cgroup("0::/\n")
        .mountinfo("")
        .file("/sys/fs/cgroup/memory.max", &bytes(G));
    assert_eq!(f.probe(), None);
}

#[test]
fn garbage_tables() {
    let f = Fixture::new("garbage_tables");
    f.cgroup(concat!(
        "\n",
        "garbage\n",
        "4:memory\n",          // no path
        "4:memory:relative\n", // path not absolute
        "::\n",
        "0::/app\n",
        "0::/second\n", // the first v2 line wins
        "\u{0}\u{1}:\u{ff}:\n",
    ))
    .file(
        "/proc/self/mountinfo",
        &format!(
            "{OTHER_MOUNTS}{}{}{}{}{}{}{}",
            "\n",
            "garbage line\n",
            "1 2 3 4 5 6\n",                                   // no separator
            "41 31 / /x - cgroup2 cgroup2 rw\n",               // too few fixed fields
            "41 31 0:38 / relative rw - cgroup2 cgroup2 rw\n", // relative mount point
            "41 31 0:38 / /sys/fs/cgroup rw - \n",             // separator, no fstype
            v2("/", "/sys/fs/cgroup"),
        ),
    )
    .file("/sys/fs/cgroup/memory.max", &bytes(G))
    .file("/sys/fs/cgroup/app/memory.max", "abc\n")
    .file("/sys/fs/cgroup/app/memory.high", &bytes(900 * M))
    .file("/sys/fs/cgroup/second/memory.max", "4096\n")
    .file("/x/app/memory.max", "4096\n")
    .file("/relative/app/memory.max", "4096\n");
    assert_eq!(f.probe(), Some(900 * M));
}

#[test]
fn garbage_limit_files() {
    let garbage = [
        "abc\n",
        "",
        "\n",
        "-1\n",
        "+4096\n",
        "4096 4096\n",
        "0x1000\n",
        "4K\n",
        "max max\n",
        "99999999999999999999999999\n",
        "18446744073709551616\n",
        "4611686018427387904\n", // 2^62: no limit
        "\u{ff}\u{fe}\n",
    ];
    let mut dir = String::from("/sys/fs/cgroup");
    let mut path = String::new();
    let f = Fixture::new("garbage_limit_files");
    for (i, content) in garbage.iter().enumerate() {
        dir += &format!("/g{i}");
        path += &format!("/g{i}");
        f.file(&format!("{dir}/memory.max"), content)
            .file(&format!("{dir}/memory.high"), content);
    }
    // Longer than a limit file can be: skipped although it starts with digits.
    f.file(
        &format!("{dir}/memory.high"),
        &format!("4096{}\n", " ".repeat(100)),
    );
    f.file("/sys/fs/cgroup/memory.max", &bytes(3 * G))
        .file("/sys/fs/cgroup/g0/g1/memory.high", &bytes(2 * G))
        .cgroup(&format!("0::{path}\n"))
        .mountinfo(&v2("/", "/sys/fs/cgroup"));
    assert_eq!(f.probe(), Some(2 * G));
    // A limit file that is a directory is unreadable, and skipped too.
    fs::remove_file(f.root.join("sys/fs/cgroup/g0/g1/memory.high")).unwrap();
    f.dir("/sys/fs/cgroup/g0/g1/memory.high/inner");
    assert_eq!(f.probe(), Some(3 * G));
}

#[test]
fn zero_is_skipped() {
    let f = v2_fixture("zero_is_skipped", "/a");
    f.file("/sys/fs/cgroup/memory.max", &bytes(G))
        .file("/sys/fs/cgroup/a/memory.max", "0\n")
        .file("/sys/fs/cgroup/a/memory.high", "0\n");
    assert_eq!(f.probe(), Some(G));

    let f = Fixture::new("zero_is_skipped_v1");
    f.cgroup("4:memory:/a\n")
        .mountinfo(&v1("/", "/sys/fs/cgroup/memory", "memory"))
        .file("/sys/fs/cgroup/memory/a/memory.limit_in_bytes", "0\n");
    assert_eq!(f.probe(), None);
}

#[test]
fn huge_tables_are_bounded() {
    // A mountinfo far past the read bound: the cgroup mount near the top is still found,
    // the rest is cut at a line boundary.
    let f = v2_fixture("huge_tables_are_bounded", "/a");
    let filler = "1 2 3:4 / /mnt rw - ext4 /dev/sda rw\n".repeat(200_000);
    f.mountinfo(&(v2("/", "/sys/fs/cgroup") + &filler))
        .file("/sys/fs/cgroup/a/memory.max", &bytes(G));
    assert_eq!(f.probe(), Some(G));
}

#[test]
fn probe_on_this_machine_does_not_panic() {
    let limit = container::probe_at(std::path::Path::new("/"));
    if let Some(bytes) = limit {
        assert!(bytes > 0 && bytes < 1 << 62);
    }
}
