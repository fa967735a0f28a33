#!/usr/bin/env bash
# The test suite: unit tests, the C harness (dlopen as Ganesha does, under valgrind) and the
# end-to-end tests against a real ganesha.nfsd in network namespaces, on Debian 12's
# packages and on Debian 13's and sid's (debootstrap roots, built once and cached outside
# the clone by scripts/chroots.sh). Needs root (network namespaces) on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
./scripts/chroots.sh
cargo build --workspace --all-targets
cargo test --workspace --all-targets --no-fail-fast -- --test-threads=1
