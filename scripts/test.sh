#!/usr/bin/env bash
# The test suite: what CI runs and what the README tells you to run.
#   scripts/test.sh            unit, integration and model-checking tests
#   CGMALLOC_SOAK=1 scripts/test.sh   then the soaks: the lifecycle matrix for
#       CGMALLOC_SOAK_S seconds (default 1800), the fork storm's 10 runs of 200 forks per
#       variant, and the stress tests over and over for half of CGMALLOC_SOAK_S
set -euo pipefail
cd "$(dirname "$0")/.."
unset LD_PRELOAD

# Loom model checks of the page counter, the stock word and the group lifecycle, in their
# own target directory (they build the crate with --cfg loom).
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
    cargo test --profile loom --test loom -q

# The preloadable library (default features: exports malloc & co.) and the launcher, for
# the C, LD_PRELOAD and launcher tests; then the launcher's own unit tests.
cargo build --release
cargo test --release --bin cgmalloc -q
# The examples, which tests/shipped/examples.rs runs (a test build does not put them in
# target/release/examples).
cargo build --release --no-default-features --examples

# Every test in its own process: the allocator's state is process-wide. Rust test
# binaries are built without `override`, so their own malloc stays glibc's unless the
# binary installs `CgMalloc` as its global allocator (`alloc` does; tests/README.md).
# CGMALLOC_SOAK is left out of this step: the lifecycle and fork storm tests make their
# default runs here, and their soaks below.
env -u CGMALLOC_SOAK cargo nextest run --release --no-default-features --all-targets --no-fail-fast

case "${CGMALLOC_SOAK:-0}" in
'' | 0) exit 0 ;;
esac
soak_s=${CGMALLOC_SOAK_S:-1800}
case "$soak_s" in
'' | *[!0-9]*)
    echo "soak: CGMALLOC_SOAK_S=$soak_s is not a number of seconds" >&2
    exit 2
    ;;
esac

# The lifecycle matrix for soak_s seconds in all (one test at a time, each looping over its
# cells for its share) and the fork storm at its acceptance size, 10 runs of 200 forks
# per variant (both are in the `lifecycle` test binary). The soak profile lets a test run
# for hours.
echo "soak: lifecycle matrix for ${soak_s} s, fork storm 10 x 200 forks per variant"
CGMALLOC_SOAK=1 CGMALLOC_SOAK_S=$soak_s cargo nextest run --release --no-default-features \
    --profile soak --test-threads 1 --no-fail-fast --test lifecycle

# The stress tests again and again for half of soak_s: the allocator under 8 threads and
# limits, the charge engine, frees racing with their owner's exit, and fork() while
# threads allocate. Each pass runs them all once; the first failure ends the script.
stress_s=$((soak_s / 2))
stress='(binary(alloc) & test(/^(stress|exit_race)::/)) | (binary(memcg) & test(/^stress::/))
    | (binary(preload) & test(/^forks::/))'
echo "soak: the stress tests over and over for ${stress_s} s"
start=$SECONDS
passes=0
while [ $((SECONDS - start)) -lt "$stress_s" ] || [ "$passes" -eq 0 ]; do
    if ! cargo nextest run --release --no-default-features --no-fail-fast --hide-progress-bar \
        --status-level fail --final-status-level fail -E "$stress" >/dev/null 2>target/soak-stress.log; then
        cat target/soak-stress.log >&2
        echo "soak: the stress tests failed in pass $((passes + 1)), after $passes passes" >&2
        exit 1
    fi
    passes=$((passes + 1))
    echo "soak: stress pass $passes ok ($((SECONDS - start)) s)"
done
rm -f target/soak-stress.log
echo "soak: $passes passes of the stress tests in $((SECONDS - start)) s, 0 failed"
