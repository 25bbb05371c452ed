//! The text layout of `libcgmalloc.so` (`link/text.ld`): code a typical process never runs
//! lies past the code it runs, so the kernel's fault-around (64 KiB of a file's text
//! mapped around each page a process first runs) does not map it into every process.
//!
//! `tests/c/resident_text.c` runs the allocation paths of every band, a thread, `fork`
//! and `malloc_trim`, in the root and in a limited child group; then it and its fork child
//! list the resident pages of the library's executable mapping. None may lie 64 KiB or more past the start
//! of `.text.rare` (the part of a window shared with the end of the code that runs may
//! be mapped with it): a page there means a process ran code the layout calls rare.
//!
//! The same holds for data: a static that starts with a non-zero byte lies in `.data`,
//! which every process maps from the file and faults in around what it touches; one that
//! starts all zero lies in `.bss`, of which only the pages written are resident. The
//! library's tables (callbacks, pressure triggers, thresholds) start all zero.

use crate::compile;
use crate::support::programs::{
    library, need, preloaded, run, without_cgmalloc_vars, Scratch, TIMEOUT,
};
use std::process::Command;

/// Fault-around's window on x86-64 Linux (`fault_around_bytes`).
const WINDOW: u64 = 64 << 10;

/// A section's place in the file: `(offset, size)`.
fn section(elf: &[u8], name: &str) -> Option<(u64, u64)> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    assert_eq!(&elf[..5], b"\x7fELF\x02", "not a 64-bit ELF file");
    let (shoff, shentsize, shnum) = (u64_at(0x28) as usize, u16_at(0x3a), u16_at(0x3c));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64_at(header(u16_at(0x3e)) + 0x18) as usize;
    (0..shnum).find_map(|i| {
        let h = header(i);
        let at = strtab + u32_at(h);
        let end = at + elf[at..].iter().position(|&b| b == 0)?;
        (&elf[at..end] == name.as_bytes()).then(|| (u64_at(h + 0x18), u64_at(h + 0x20)))
    })
}

#[test]
fn rarely_run_code_is_not_mapped() {
    let so = library();
    let elf = std::fs::read(&so).expect("read the library");
    let find = |name| {
        let s =
            section(&elf, name).unwrap_or_else(|| panic!("{}: no {name} section", so.display()));
        assert!(s.1 > 0, "{name} is empty");
        s
    };
    let (text, rare, symbolize) = (find(".text"), find(".text.rare"), find(".text.symbolize"));
    assert!(
        text.0 + text.1 <= rare.0 && rare.0 + rare.1 <= symbolize.0,
        ".text {text:x?}, .text.rare {rare:x?}, .text.symbolize {symbolize:x?}: out of order"
    );
    let cold = (rare.0 + WINDOW, symbolize.0 + symbolize.1);
    assert!(
        cold.0 < cold.1,
        "less than a window of rare code: nothing to check"
    );

    let dir = Scratch::new("resident-text");
    let exe = compile(&dir, "resident_text.c", "resident_text", &[]);
    for groups in [None, Some(("/t:max=64M", "/t"))] {
        let mut cmd = without_cgmalloc_vars(preloaded(Command::new(&exe)));
        if let Some((spec, attach)) = groups {
            cmd.env("CGMALLOC_GROUPS", spec)
                .env("CGMALLOC_ATTACH", attach);
        }
        let r = run(&mut cmd, None, TIMEOUT);
        r.assert_success("resident_text");
        for who in ["parent", "child"] {
            let prefix = format!("resident {who} ");
            let resident: Vec<u64> = r
                .stdout()
                .lines()
                .filter_map(|l| l.strip_prefix(prefix.as_str()))
                .map(|h| u64::from_str_radix(h, 16).expect("an offset"))
                .collect();
            let in_text = resident
                .iter()
                .filter(|&&o| o >= text.0 && o < text.0 + text.1)
                .count();
            assert!(
                in_text > 0,
                "{who}: no page of .text resident: pagemap not read?\n{}",
                r.describe()
            );
            let cold_pages: Vec<String> = resident
                .iter()
                .filter(|&&o| o >= cold.0 && o < cold.1)
                .map(|o| format!("{o:#x}"))
                .collect();
            assert!(
                cold_pages.is_empty(),
                "{groups:?}, {who}: pages of rare code resident at {cold_pages:?} (rare code \
                 from {:#x}, checked from {:#x}): code on a common path is in a module \
                 link/text.ld calls rare",
                rare.0,
                cold.0
            );
            eprintln!(
                "{groups:?}, {who}: {} pages of the library's text resident ({in_text} of \
                 the {} of .text), none of the {} past {:#x}",
                resident.len(),
                text.1.div_ceil(4096),
                (cold.1 - cold.0) / 4096,
                cold.0
            );
        }
    }
}

/// `.data` above this means a table that starts with a non-zero byte.
const DATA_CAP: u64 = 16 << 10;

#[test]
fn tables_start_all_zero() {
    let so = library();
    let elf = std::fs::read(&so).expect("read the library");
    let (_, data) = section(&elf, ".data").expect("a .data section");
    let (_, bss) = section(&elf, ".bss").expect("a .bss section");
    assert!(
        data <= DATA_CAP,
        "{}: .data is {data} bytes (cap {DATA_CAP}): a static table starts with a non-zero \
         byte, so every process maps it; make its free state all zero bytes",
        so.display()
    );
    assert!(
        bss > data,
        ".bss {bss} bytes, .data {data}: the tables are not in .bss"
    );
}

#[test]
fn no_shared_unwinder_is_loaded() {
    // `cat` needs no `libgcc_s` of its own: any mapped is the library's.
    let mut cmd = without_cgmalloc_vars(preloaded(Command::new(need("cat"))));
    cmd.arg("/proc/self/maps");
    let r = run(&mut cmd, None, TIMEOUT);
    r.assert_success("cat /proc/self/maps");
    let maps = r.stdout();
    assert!(
        maps.contains("libcgmalloc"),
        "the library is not mapped: not preloaded?\n{maps}"
    );
    let unwinder: Vec<&str> = maps.lines().filter(|l| l.contains("libgcc_s")).collect();
    // What build.rs found, in this build of the crate: the library (built with the
    // `override` feature) links it in.
    match option_env!("CGMALLOC_STATIC_UNWINDER") {
        Some(archive) if !archive.is_empty() => assert!(
            unwinder.is_empty(),
            "libgcc_s is loaded with the library, though build.rs links {archive} in:\n{}",
            unwinder.join("\n")
        ),
        _ => eprintln!("skipped: build.rs found no libgcc_eh.a (std loads libgcc_s)"),
    }
}
