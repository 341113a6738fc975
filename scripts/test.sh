#!/usr/bin/env bash
# Sets up everything (Debian packages, the shared venv, MNIST + Fashion-MNIST) and runs the tests.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/system-deps.sh --with-test-tools
source scripts/venv.sh
export CFFBENCH_DATA="${CFFBENCH_DATA:-$PWD/data}"
cffbench data fetch
python -m pytest "$@"
