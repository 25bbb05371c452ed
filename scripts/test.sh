#!/usr/bin/env bash
# The test suite: what CI runs and what the README tells you to run.
#   scripts/test.sh            unit, integration and model-checking tests
#   CGMALLOC_SOAK=1 scripts/test.sh   also the long soaks
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
# The examples, which tests/examples.rs runs (a test build does not put them in
# target/release/examples).
cargo build --release --no-default-features --examples

# Every test in its own process: the allocator's state is process-wide. Rust test
# binaries are built without `override`, so their own malloc stays glibc's unless a test
# installs `CgMalloc` as its global allocator.
cargo nextest run --release --no-default-features --all-targets --no-fail-fast
