#!/usr/bin/env bash
# Regenerates include/cgmalloc.h from the crate with cbindgen (cbindgen.toml).
#   scripts/header.sh           rewrite the header
#   scripts/header.sh --check   fail if the committed header differs from a fresh one
set -euo pipefail
cd "$(dirname "$0")/.."
out=include/cgmalloc.h
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cbindgen --quiet --config cbindgen.toml --crate cgmalloc --output "$tmp"
if [ "${1:-}" = "--check" ]; then
    if ! diff -u "$out" "$tmp"; then
        echo "include/cgmalloc.h is out of date: run scripts/header.sh and commit it" >&2
        exit 1
    fi
else
    cp "$tmp" "$out"
fi
