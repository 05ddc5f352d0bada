#!/usr/bin/env bash
# The project's test command (README): builds everything and runs every test of every crate.
# It sets up all the tests need by itself, so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real Python clients for the end-to-end tests (tests/tests/pynsq.rs), in a venv under target/
# that is reused while it holds exactly these pins.
PYNSQ=pynsq==0.9.1
TORNADO=tornado==6.4.2
SNAPPY=python-snappy==0.7.3
# A real OpenMetrics/Prometheus text parser for the /metrics tests (tests/tests/metrics.rs).
PROMETHEUS=prometheus-client==0.21.1
PYENV="$PWD/target/pyenv"
pyenv_ready() {
    "$PYENV/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata as m
assert m.version("pynsq") == "0.9.1" and m.version("tornado") == "6.4.2"
assert m.version("prometheus-client") == "0.21.1"
EOF
}
if ! pyenv_ready; then
    echo "setting up $PYENV ($PYNSQ, $TORNADO, $PROMETHEUS)"
    python3 -m venv --clear "$PYENV"
    "$PYENV/bin/pip" install --quiet --disable-pip-version-check "$PYNSQ" "$TORNADO" "$PROMETHEUS"
    # Snappy is optional: pynsq's snappy test is skipped (with a note) when it is missing.
    "$PYENV/bin/pip" install --quiet --disable-pip-version-check "$SNAPPY" ||
        echo "note: $SNAPPY did not install; pynsq's snappy test will be skipped"
    pyenv_ready
fi
export NSQ_TEST_PYTHON="$PYENV/bin/python"

cargo build --workspace --bins
cargo build -p nsq-client --examples
cargo test --workspace
