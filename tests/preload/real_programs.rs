//! Real programs: python3, perl, sqlite3, gcc and sort print the same with and without
//! the library preloaded.

use crate::support::programs::{need, plain, preloaded, run, tail, Run, Scratch, TIMEOUT};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

/// Runs `make()` plainly and preloaded (at the same time) and returns both runs, which
/// must succeed.
fn both(what: &str, make: impl Fn() -> Command + Sync, stdin: Option<&Path>) -> (Run, Run) {
    let (base, pre) = thread::scope(|s| {
        let base = s.spawn(|| run(&mut plain(make()), stdin, TIMEOUT));
        let pre = s.spawn(|| run(&mut preloaded(make()), stdin, TIMEOUT));
        (base.join().unwrap(), pre.join().unwrap())
    });
    base.assert_success(&format!("{what} (without the library)"));
    pre.assert_success(&format!("{what} (LD_PRELOAD)"));
    eprintln!(
        "{what}: {:.1?} plain, {:.1?} preloaded",
        base.elapsed, pre.elapsed
    );
    (base, pre)
}

fn same_stdout(what: &str, make: impl Fn() -> Command + Sync, stdin: Option<&Path>) {
    let (base, pre) = both(what, make, stdin);
    assert!(
        !base.stdout.is_empty(),
        "{what}: no output: {}",
        base.describe()
    );
    assert!(
        base.stdout == pre.stdout,
        "{what}: output differs under LD_PRELOAD\n--- plain ---\n{}\n--- preloaded ---\n{}",
        tail(base.stdout(), 3000),
        pre.describe()
    );
}

const PYTHON_SCRIPT: &str = r#"
import collections, hashlib, json, random, threading

random.seed(12345)
data = {}
for i in range(60000):
    data["key%d" % i] = [i, str(i) * (i % 7), {"n": i, "s": "x" * (i % 50), "f": i / 7}]
text = json.dumps(data, sort_keys=True)
assert json.loads(text) == data
print(len(text), hashlib.sha256(text.encode()).hexdigest())

xs = [random.random() for _ in range(100000)]
xs.sort()
print("%.6f" % sum(xs), xs[0] < xs[-1])
counts = collections.Counter(str(random.randint(0, 3000)) for _ in range(100000))
print(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:5])
words = " ".join(str(i * 7919 % 10007) for i in range(50000)).split()
print(len(set(words)), "".join(sorted(words)[:10]))

results = {}
lock = threading.Lock()

def work(t):
    r = random.Random(t)
    d = {}
    chunks = []
    for i in range(20000):
        d[r.randint(0, 5000)] = [r.random() for _ in range(i % 8)]
        chunks.append(bytes(r.getrandbits(8) for _ in range(i % 24)))
        if len(chunks) > 500:
            del chunks[: r.randint(1, 400)]
    blob = json.dumps({str(k): v for k, v in sorted(d.items())})
    h = hashlib.sha256(blob.encode() + b"".join(chunks)).hexdigest()
    with lock:
        results[t] = (len(d), h)

threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for t in sorted(results):
    print(t, *results[t])
"#;

#[test]
fn python3_same_output() {
    let python = need("python3");
    // Run the interpreter itself, not a wrapper script (pyenv shims are bash scripts).
    let r = run(
        plain(Command::new(&python)).args(["-c", "import sys; print(sys.executable)"]),
        None,
        TIMEOUT,
    );
    r.assert_success("python3 -c 'print(sys.executable)'");
    let exe = PathBuf::from(r.stdout().trim());
    let dir = Scratch::new("python3");
    let script = dir.join("work.py");
    std::fs::write(&script, PYTHON_SCRIPT).unwrap();
    same_stdout(
        "python3 (PYTHONMALLOC=malloc)",
        || {
            let mut c = Command::new(&exe);
            c.arg(&script)
                .env("PYTHONMALLOC", "malloc")
                .env("PYTHONHASHSEED", "0");
            c
        },
        None,
    );
}

const PERL_SCRIPT: &str = r#"
use strict;
use warnings;
use Digest::MD5 qw(md5_hex);

my %h;
for my $i (1 .. 150000) {
    $h{"k$i"} = [$i, "v" x ($i % 20), { n => $i }];
}
my $sum = 0;
for my $k (sort keys %h) {
    $sum += $h{$k}[0] + length($h{$k}[1]) + $h{$k}[2]{n};
}
delete $h{"k$_"} for grep { $_ % 3 == 0 } 1 .. 150000;
$h{"n$_"} = "x" x ($_ % 100) for 1 .. 50000;
print scalar(keys %h), " $sum\n";

my @s = sort { $a <=> $b } map { ($_ * 7919) % 100003 } 1 .. 100000;
print "@s[0 .. 9]\n";
my $str = join(",", map { $_ x 3 } 1 .. 30000);
my @parts = split /,/, $str;
print scalar(@parts), " ", length($str), " ", md5_hex($str), "\n";
my %count;
$count{ substr($_, 0, 2) }++ for @parts;
print join(" ", map { "$_=$count{$_}" } (sort keys %count)[0 .. 9]), "\n";
my $text = "";
$text .= "line $_ " . ("abc" x ($_ % 13)) . "\n" for 1 .. 40000;
(my $copy = $text) =~ s/abc/XY/g;
print length($copy), " ", md5_hex($copy), "\n";
"#;

#[test]
fn perl_same_output() {
    let perl = need("perl");
    let dir = Scratch::new("perl");
    let script = dir.join("work.pl");
    std::fs::write(&script, PERL_SCRIPT).unwrap();
    same_stdout(
        "perl",
        || {
            let mut c = Command::new(&perl);
            c.arg(&script).env("PERL_HASH_SEED", "0");
            c
        },
        None,
    );
}

const SQL_SCRIPT: &str = "
CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v INTEGER, b BLOB);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000)
INSERT INTO t SELECT x, 'key' || (x * 7919 % 100003), x % 977, zeroblob(x % 300) FROM c;
CREATE INDEX tk ON t(k);
CREATE INDEX tv ON t(v, k);
SELECT count(*), sum(v), sum(length(b)) FROM t;
SELECT v, count(*) FROM t GROUP BY v ORDER BY count(*) DESC, v LIMIT 5;
SELECT k FROM t ORDER BY k LIMIT 3;
UPDATE t SET k = upper(k) || '-' || v WHERE id % 5 = 0;
DELETE FROM t WHERE id % 7 = 0;
SELECT count(*), min(k), max(k) FROM t;
SELECT group_concat(id) FROM (SELECT id FROM t WHERE v = 3 ORDER BY id LIMIT 20);
SELECT a.v, count(*) FROM t a JOIN t b ON a.k = b.k WHERE a.id < 20000 GROUP BY a.v
  ORDER BY 2 DESC, 1 LIMIT 3;
SELECT length(group_concat(k, ',')) FROM (SELECT k FROM t ORDER BY k DESC);
PRAGMA integrity_check;
";

#[test]
fn sqlite3_same_output() {
    let sqlite3 = need("sqlite3");
    let dir = Scratch::new("sqlite3");
    let script = dir.join("work.sql");
    std::fs::write(&script, SQL_SCRIPT).unwrap();
    same_stdout(
        "sqlite3",
        || {
            let mut c = Command::new(&sqlite3);
            c.arg(":memory:");
            c
        },
        Some(&script),
    );
}

/// `gcc -O1 -c` of a generated file of 3,000 functions (20,000 take 30-90 s per compile
/// on a small CI machine): the object files must be identical.
#[test]
fn gcc_same_object() {
    let cc = need("cc");
    let dir = Scratch::new("gcc");
    let src = dir.join("big.c");
    let mut text = String::from("struct s { int a; long b; char c[16]; };\n");
    for i in 0..3000 {
        text.push_str(&format!(
            "int f{i}(int x, struct s *p) {{ int y = x * {m} + p->a; \
             if (y > {i}) p->b += y; p->c[{c}] = (char)y; return y ^ {i}; }}\n",
            m = i % 97 + 1,
            c = i % 16
        ));
    }
    std::fs::write(&src, text).unwrap();
    let base_obj = dir.join("plain.o");
    let pre_obj = dir.join("preloaded.o");
    let (base, pre) = thread::scope(|s| {
        let base = s.spawn(|| {
            let mut c = plain(Command::new(&cc));
            c.args(["-O1", "-c", "-o"]).arg(&base_obj).arg(&src);
            run(&mut c, None, TIMEOUT)
        });
        let pre = s.spawn(|| {
            let mut c = preloaded(Command::new(&cc));
            c.args(["-O1", "-c", "-o"]).arg(&pre_obj).arg(&src);
            run(&mut c, None, TIMEOUT)
        });
        (base.join().unwrap(), pre.join().unwrap())
    });
    base.assert_success("gcc -c (without the library)");
    pre.assert_success("gcc -c (LD_PRELOAD)");
    let a = std::fs::read(&base_obj).unwrap();
    let b = std::fs::read(&pre_obj).unwrap();
    assert!(a.len() > 100_000, "object file suspiciously small");
    assert!(
        a == b,
        "gcc produced a different object file under LD_PRELOAD ({} vs {} bytes)",
        a.len(),
        b.len()
    );
    eprintln!(
        "gcc -c: {:.1?} plain, {:.1?} preloaded, {} bytes",
        base.elapsed,
        pre.elapsed,
        a.len()
    );
}

/// `sort` of a generated 20 MB file, with a small buffer so that it also writes and
/// merges temporary files, on two threads.
#[test]
fn sort_same_output() {
    let sort = need("sort");
    let dir = Scratch::new("sort");
    let input = dir.join("input.txt");
    let mut text = String::with_capacity(21 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while text.len() < 20 << 20 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (x >> 59) as usize + 1;
        let word: String = (0..len)
            .map(|i| (b'a' + ((x >> (i * 2 % 56)) % 26) as u8) as char)
            .collect();
        text.push_str(&format!("{word} {} {}\n", x >> 40, x % 1000));
    }
    std::fs::write(&input, &text).unwrap();
    let mut want: Vec<&str> = text.lines().collect();
    want.sort_unstable();
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let (base, pre) = both(
        "sort",
        || {
            let mut c = Command::new(&sort);
            c.args(["-S", "4M", "--parallel=2", "-T"])
                .arg(&tmp)
                .arg(&input)
                .env("LC_ALL", "C");
            c
        },
        None,
    );
    assert!(
        base.stdout == pre.stdout,
        "sort output differs under LD_PRELOAD"
    );
    let mut expected = want.join("\n");
    expected.push('\n');
    assert!(
        pre.stdout == expected.as_bytes(),
        "sort output under LD_PRELOAD is not the sorted input"
    );
}
