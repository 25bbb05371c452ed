//! The layer graph holds: every file of the library (`src/**.rs`, the launcher in
//! `src/bin/` aside) imports only from layers below its own, as DESIGN.md's `layers`
//! block lists them. A newcomer who adds a back-edge or a cycle learns it here.
//!
//! What counts as an import: every path that starts with `crate::` or `super::`, in a
//! `use` (braced groups included) or in code, and every path that starts with a name a
//! `use` bound to a module (`use crate::memcg;` then `memcg::charge::try_charge`).
//! Comments, string and character literals are skipped, and so are `#[cfg(test)]`
//! modules: unit tests may reach anywhere. A path names the deepest module (file) that
//! is a prefix of it; a file belongs to the longest module path listed in the block that
//! is a prefix of its own. Imports between files of one listed name are not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The layers, highest first, from DESIGN.md's fenced block whose info string is
/// `layers`: one layer a line, names separated by spaces, `#` starts a comment.
fn layers(design: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in design.lines() {
        let t = line.trim();
        if !inside {
            inside = t == "```layers";
            continue;
        }
        if t.starts_with("```") {
            return out;
        }
        let t = t.split('#').next().unwrap().trim();
        if !t.is_empty() {
            out.push(t.split_whitespace().map(str::to_string).collect());
        }
    }
    panic!("DESIGN.md has no complete ```layers block");
}

/// `a::b` for `src/a/b.rs` and `src/a/b/mod.rs`; `""` for `src/lib.rs`.
fn module_of(rel: &Path) -> String {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts.join("::")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            if p.file_name().unwrap() != "bin" {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source with comments removed and every string, byte string, raw string and
/// character literal replaced by a space; lifetimes are kept.
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    while i < b.len() {
        let c = b[i];
        let prev_ident = i > 0 && ident(b[i - 1]);
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if !prev_ident && raw_string_start(&b[i..]).is_some() {
            let (skip, hashes) = raw_string_start(&b[i..]).unwrap();
            i += skip;
            let mut end = vec![b'"'];
            end.extend(std::iter::repeat(b'#').take(hashes));
            while i < b.len() && !b[i..].starts_with(&end) {
                i += 1;
            }
            i += end.len();
            out.push(' ');
        } else if c == b'"'
            || (!prev_ident && (c == b'b' || c == b'c') && b.get(i + 1) == Some(&b'"'))
        {
            i += if c == b'"' { 1 } else { 2 };
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else if c == b'\'' || (!prev_ident && c == b'b' && b.get(i + 1) == Some(&b'\'')) {
            let q = if c == b'\'' { i } else { i + 1 };
            // A character literal closes within a few bytes; a lifetime does not close.
            let close = if b.get(q + 1) == Some(&b'\\') {
                (q + 3..b.len().min(q + 12)).find(|&k| b[k] == b'\'')
            } else {
                let len = src[q + 1..].chars().next().map_or(1, char::len_utf8);
                (b.get(q + 1 + len) == Some(&b'\'')).then_some(q + 1 + len)
            };
            match close {
                Some(k) => {
                    i = k + 1;
                    out.push(' ');
                }
                None => {
                    out.push('\'');
                    i = q + 1;
                }
            }
        } else {
            let len = src[i..].chars().next().unwrap().len_utf8();
            out.push_str(&src[i..i + len]);
            i += len;
        }
    }
    out
}

/// `(bytes before the text, number of #)` if `b` starts a raw string: `r"`, `r#"`,
/// `br"`, `cr##"`, ...
fn raw_string_start(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = usize::from(matches!(b.first(), Some(b'b' | b'c')));
    if b.get(i) != Some(&b'r') {
        return None;
    }
    i += 1;
    let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
    i += hashes;
    (b.get(i) == Some(&b'"')).then_some((i + 1, hashes))
}

/// Tokens: identifiers, `::`, and single punctuation characters.
fn tokens(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let cs: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_alphanumeric() || c == '_' {
            let s = i;
            while i < cs.len() && (cs[i].is_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            out.push(cs[s..i].iter().collect());
        } else if c == ':' && cs.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

/// Removes `#[cfg(test)]`-gated items that have a body (`mod tests { .. }`, `fn ..`).
fn drop_test_items(t: Vec<String>) -> Vec<String> {
    let pat = ["#", "[", "cfg", "(", "test", ")", "]"];
    let mut out = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if t[i..].iter().take(pat.len()).map(String::as_str).eq(pat) {
            // Skip to the item's body and past its closing brace (or to a `;`).
            let mut j = i + pat.len();
            while j < t.len() && t[j] != "{" && t[j] != ";" {
                j += 1;
            }
            if j < t.len() && t[j] == "{" {
                let mut depth = 0;
                while j < t.len() {
                    match t[j].as_str() {
                        "{" => depth += 1,
                        "}" => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    j += 1;
                }
            }
            i = j + 1;
        } else {
            out.push(t[i].clone());
            i += 1;
        }
    }
    out
}

fn is_ident(t: &str) -> bool {
    t.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Every path of a use tree starting at `t[i]` (after a `::`), appended to `prefix`;
/// returns the index after the tree.
fn use_tree(t: &[String], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
    let mut path = prefix;
    loop {
        match t.get(i).map(String::as_str) {
            Some("{") => {
                i += 1;
                while i < t.len() && t[i] != "}" {
                    i = use_tree(t, i, path.clone(), out);
                    if t.get(i).map(String::as_str) == Some(",") {
                        i += 1;
                    }
                }
                return i + 1;
            }
            Some("self") => {
                out.push(path);
                return i + 1;
            }
            Some("*") => {
                out.push(path);
                return i + 1;
            }
            Some(id) if is_ident(id) => {
                path.push(id.to_string());
                i += 1;
                if t.get(i).map(String::as_str) == Some("::") {
                    i += 1;
                    continue;
                }
                out.push(path);
                return i;
            }
            _ => {
                out.push(path);
                return i;
            }
        }
    }
}

/// The module paths that file `module` (a `mod.rs` when `is_dir`) imports.
fn imports(module: &str, is_dir: bool, src: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let t = drop_test_items(tokens(&code_only(src)));
    let me: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    // `super` of a file is its folder's module; of a `mod.rs`, the folder's parent.
    let parent: Vec<String> = if is_dir {
        me[..me.len().saturating_sub(1)].to_vec()
    } else {
        me[..me.len() - 1].to_vec()
    };
    let mut paths = Vec::new();
    let mut i = 0;
    while i < t.len() {
        let start_of_path = i == 0 || t[i - 1] != "::";
        let next_is_sep = t.get(i + 1).map(String::as_str) == Some("::");
        if start_of_path && next_is_sep && (t[i] == "crate" || t[i] == "super") {
            let mut base = if t[i] == "crate" {
                Vec::new()
            } else {
                parent.clone()
            };
            let mut j = i + 2;
            while t.get(j).map(String::as_str) == Some("super")
                && t.get(j + 1).map(String::as_str) == Some("::")
            {
                base.pop();
                j += 2;
            }
            i = use_tree(&t, j, base, &mut paths);
        } else {
            i += 1;
        }
    }
    let resolve = |p: &[String]| -> Option<String> {
        (1..=p.len())
            .rev()
            .map(|k| p[..k].join("::"))
            .find(|m| modules.contains(m))
    };
    let mut found: BTreeSet<String> = paths.iter().filter_map(|p| resolve(p)).collect();
    // Names that a `use` bound to a module, and a folder module's own children (in scope
    // in its `mod.rs` without a `use`); paths that start with them.
    let mut aliases: BTreeMap<String, String> = paths
        .iter()
        .filter_map(|p| {
            let full = p.join("::");
            modules
                .contains(&full)
                .then(|| (p.last().unwrap().clone(), full))
        })
        .collect();
    if is_dir {
        for m in modules {
            let (parent, name) = m.rsplit_once("::").unwrap_or(("", m));
            if parent == module && !m.is_empty() {
                aliases.insert(name.to_string(), m.clone());
            }
        }
    }
    for i in 0..t.len() {
        let start_of_path = i == 0 || t[i - 1] != "::";
        if start_of_path && t.get(i + 1).map(String::as_str) == Some("::") {
            if let Some(full) = aliases.get(&t[i]) {
                let mut p: Vec<String> = full.split("::").map(String::from).collect();
                let mut j = i + 2;
                while let Some(id) = t.get(j).filter(|s| is_ident(s)) {
                    p.push(id.clone());
                    if t.get(j + 1).map(String::as_str) != Some("::") {
                        break;
                    }
                    j += 2;
                }
                found.extend(resolve(&p));
            }
        }
    }
    found.remove(module);
    found
}

/// The listed name a module belongs to: the longest listed prefix of its path.
fn owner<'a>(module: &str, level: &'a BTreeMap<String, usize>) -> Option<&'a String> {
    level
        .keys()
        .filter(|name| {
            module == name.as_str() || module.starts_with(&format!("{name}::")) || name.is_empty()
        })
        .max_by_key(|name| name.len())
}

/// Every file's imports, as `(importer, imported)` module paths.
fn graph() -> Vec<(String, String)> {
    let src = Path::new(ROOT).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(f.strip_prefix(&src).unwrap()))
        .collect();
    let mut edges = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        let module = module_of(rel);
        let is_dir = matches!(
            rel.file_stem().and_then(|s| s.to_str()),
            Some("mod" | "lib")
        );
        let text = fs::read_to_string(f).unwrap();
        for to in imports(&module, is_dir, &text, &modules) {
            edges.push((module.clone(), to));
        }
    }
    edges
}

#[test]
fn every_import_points_down_the_layers() {
    let design = fs::read_to_string(Path::new(ROOT).join("DESIGN.md")).unwrap();
    let layers = layers(&design);
    // Level 0 is the bottom layer.
    let mut level = BTreeMap::new();
    for (i, names) in layers.iter().rev().enumerate() {
        for n in names {
            let n = if n == "lib" { String::new() } else { n.clone() };
            assert!(
                level.insert(n.clone(), i).is_none(),
                "DESIGN.md lists `{n}` twice"
            );
        }
    }
    let mut wrong = Vec::new();
    let mut unlisted = BTreeSet::new();
    for (from, to) in graph() {
        let (Some(a), Some(b)) = (owner(&from, &level), owner(&to, &level)) else {
            unlisted.insert(if owner(&from, &level).is_none() {
                from
            } else {
                to
            });
            continue;
        };
        if a != b && level[a] <= level[b] {
            wrong.push(format!("{from} -> {to} (`{a}` is not above `{b}`)"));
        }
    }
    assert!(
        unlisted.is_empty(),
        "modules that DESIGN.md's layers block does not place: {unlisted:?}"
    );
    assert!(
        wrong.is_empty(),
        "imports that point up or sideways (DESIGN.md, \"Layers\"):\n  {}",
        wrong.join("\n  ")
    );
}

/// The reader itself: the cases that a careless scan gets wrong.
#[test]
fn the_reader_sees_what_the_compiler_sees() {
    let modules: BTreeSet<String> = ["a", "a::b", "a::c", "d", "e", "f"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let src = r##"
        //! Doc naming crate::d, which is no import.
        use super::{b::{X, Y}, self as _};
        use crate::d;
        /* crate::e in a comment */
        const S: &str = "crate::e";
        const R: &[u8] = br#"crate::e"#;
        fn f<'a>(x: &'a u8) -> char { let _ = d::thing(); '"' }
        #[cfg(test)]
        mod tests { use crate::f; }
        fn g() { crate::a::c::h(); }
    "##;
    let got = imports("a::x", false, src, &modules);
    let want: BTreeSet<String> = ["a", "a::b", "a::c", "d"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(got, want);
}

/// Prints every import edge, grouped by importer: `cargo nextest run --release
/// --no-default-features --test shipped -E "test(/^layers::/)" --run-ignored only --no-capture`.
#[test]
#[ignore = "prints the graph for a reader; checks nothing"]
fn print_the_graph() {
    for (from, to) in graph() {
        println!("{from} -> {to}");
    }
}
