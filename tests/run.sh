#!/usr/bin/env bash
# The project's test command (README): builds everything and runs every test of every crate.
# It sets up all the tests need by itself, so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --bins
cargo test --workspace
