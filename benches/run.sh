#!/bin/sh
# The allocator benchmark: see the docstring of benches/run.py (`benches/run.sh -h`).
exec python3 "$(dirname "$0")/run.py" "$@"
