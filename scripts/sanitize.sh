#!/usr/bin/env bash
# Sanitizer and Miri tiers, run by CI after scripts/test.sh:
#   scripts/sanitize.sh                  ThreadSanitizer, AddressSanitizer and Miri
#   scripts/sanitize.sh tsan miri        only the tiers named (tsan, asan, miri)
#
# Needs the nightly toolchain with rust-src and miri (.ci/run installs them) and
# llvm-symbolizer (TSan's suppressions match function names). Every tier builds in
# a target directory of its own, so none rebuilds another's or scripts/test.sh's.
#
# TSan and ASan: the Rust test binaries that run the library in their own process, built
# with nightly, `-Zbuild-std` (the standard library instrumented too) and `--target`
# (so build scripts and proc-macros are not), profile `sanitize` (release, unwinding).
# - Run: the library's unit tests and the two test binaries that call the library in
#   process (tests/README.md): `alloc`, which installs `CgMalloc` as the global allocator
#   and races threads through it (what TSan is for), and `memcg`, which drives the
#   accounting engine (and, under ASan, its boxed callbacks, allocated from glibc's
#   malloc) through the Rust API, its `stress` module with 8 threads.
# - Not run: the binaries `capi`, `preload`, `lifecycle`, `launcher` and `shipped` run C
#   programs, the launcher or `target/release/libcgmalloc.so` in child processes, which
#   are not instrumented, so the sanitizer would watch only the test harness;
#   scripts/test.sh runs them. `loom` needs `--cfg loom` (scripts/test.sh). Benchmarks.
#   `memcg`'s `model::` tests: one thread, nothing to race, and over 5 minutes
#   instrumented under TSan; left out of ASan too.
# - Excluded tests, each with its reason in the filter below:
#   TSan `alloc` `adopt::a_fork_child_keeps_the_abandoned_segments_for_adoption` and
#   `retire::a_fork_child_recycles_the_retired_states`: their child, forked from a
#   multi-threaded process, starts threads, which TSan refuses ("starting new threads
#   after multi-threaded fork is not supported");
#   TSan `alloc` `retire::a_thread_past_its_exit_takes_no_retired_state_over`: it
#   allocates in the last round of a thread's key destructors, after TSan's own
#   destructor has finished the thread (TSan then faults in its own runtime);
#   TSan `alloc` `large_slack::slack_purged_while_a_mapping_changes_group`: asserts that
#   more than 100 rounds run in 3 seconds, about 20 do under TSan.
# - Scaled down: `alloc`'s `threads::` tests run 20,000 thread create / join cycles
#   instead of 100,000 (CGMALLOC_ALLOC_THREADS); the other stress tests run at full size.
# - What each sanitizer sees: cgmalloc's blocks and metadata live in its own mappings,
#   which neither sanitizer's allocator knows. TSan checks every access to them (user
#   blocks, span descriptors, segment headers, the accounting engine's tables) for
#   races. ASan checks stack and global accesses (the segment map, the group and thread
#   tables, per-class tables) and heap memory from glibc's malloc (the test binaries
#   that do not install `CgMalloc`, and the callbacks' boxes), with leak checking; it
#   cannot see an overflow inside a cgmalloc block.
# - Intended races are suppressed in scripts/tsan.supp, each with its justification.
#
# Miri: the library's unit tests of the parts that need no system call, selected by
# name: the page counter (memcg::counter), the stock word (memcg::stock), the group table
# (memcg::table), size strings (memcg::size), group paths (memcg::path), globs
# (util::glob), the configuration parsers (config) and the interface files
# (memcg::files). Miri runs the library's `.init_array` constructor too, so
# CGMALLOC_CGROUP=off is forwarded to it (the container probe reads /proc, which Miri's
# isolation refuses), and the constructor's other system call, the `fstat` of stderr
# before it keeps a copy, fails with an error under isolation (-Zmiri-isolation-error):
# no copy is kept, as on a system where fd 2 is closed. The interface-file tests use the process's 8,192-slot group table
# (2 MiB), and each call through it retags all of it under Stacked Borrows (minutes per
# test): they run in a second Miri pass with Stacked Borrows off, still checking for
# undefined behaviour and data races. The stock and table tests use small tables of
# their own, with Stacked Borrows on.
#
# Never run with LD_PRELOAD set (cargo and rustc bring their own allocator).
set -uo pipefail
cd "$(dirname "$0")/.."
unset LD_PRELOAD

TARGET=x86_64-unknown-linux-gnu
tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(tsan asan miri)
for t in "${tiers[@]}"; do
    case "$t" in
    tsan | asan | miri) ;;
    *)
        echo "sanitize.sh: unknown tier '$t' (want tsan, asan or miri)" >&2
        exit 2
        ;;
    esac
done

# In-process test binaries (see above), and what both tiers leave out of them.
IN_PROCESS=(alloc memcg)
NOT_MODEL='not (binary(memcg) and test(/^model::/))'

test_args() {
    local t
    printf '%s\n' --lib
    for t in "$@"; do printf '%s\n' --test "$t"; done
}

# nextest run under sanitizer $1 (thread|address) in target/$2, with the test binaries
# and filter given after them.
run_sanitized() {
    local sanitizer=$1 dir=$2
    shift 2
    RUSTFLAGS="-Zsanitizer=$sanitizer" CARGO_TARGET_DIR="target/$dir" \
        CGMALLOC_ALLOC_THREADS=20000 \
        cargo +nightly nextest run -Zbuild-std --target "$TARGET" \
        --cargo-profile sanitize --no-default-features --no-fail-fast "$@"
}

tier_tsan() {
    if ! command -v llvm-symbolizer >/dev/null 2>&1; then
        echo "sanitize.sh: llvm-symbolizer not found: TSan suppressions need symbols" >&2
        return 1
    fi
    local args
    mapfile -t args < <(test_args "${IN_PROCESS[@]}")
    TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp second_deadlock_stack=1" \
        run_sanitized thread tsan "${args[@]}" -E "$NOT_MODEL"'
            and not (binary(alloc) and test(=adopt::a_fork_child_keeps_the_abandoned_segments_for_adoption))
            and not (binary(alloc) and test(=retire::a_fork_child_recycles_the_retired_states))
            and not (binary(alloc) and test(=retire::a_thread_past_its_exit_takes_no_retired_state_over))
            and not (binary(alloc) and test(=large_slack::slack_purged_while_a_mapping_changes_group))'
}

tier_asan() {
    local args
    mapfile -t args < <(test_args "${IN_PROCESS[@]}")
    ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=1" \
        run_sanitized address asan "${args[@]}" -E "$NOT_MODEL"
}

MIRI_TESTS=(memcg::counter:: memcg::stock:: memcg::table:: memcg::size:: memcg::path::
    util::glob:: config::)

tier_miri() {
    export CGMALLOC_CGROUP=off
    local flags="-Zmiri-env-forward=CGMALLOC_CGROUP -Zmiri-isolation-error=warn-nobacktrace"
    MIRIFLAGS="$flags" \
        cargo +nightly miri test --lib --no-default-features -- "${MIRI_TESTS[@]}" &&
        MIRIFLAGS="$flags -Zmiri-disable-stacked-borrows" \
            cargo +nightly miri test --lib --no-default-features -- memcg::files::
}

declare -A result took
failed=0
for t in "${tiers[@]}"; do
    echo "=== sanitize.sh: $t"
    start=$SECONDS
    if "tier_$t"; then
        result[$t]=passed
    else
        result[$t]=FAILED
        failed=1
    fi
    took[$t]=$((SECONDS - start))
done

echo
echo "=== sanitize.sh summary"
for t in "${tiers[@]}"; do
    printf '  %-5s %-7s %4d:%02d\n' "$t" "${result[$t]}" $((took[$t] / 60)) $((took[$t] % 60))
done
exit $failed
