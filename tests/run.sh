#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what the tests need
# (system packages for the codecs, a Python venv with the reference tools),
# then runs every test. Idempotent: reruns skip what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cmake >/dev/null || need_apt+=(cmake)
command -v nasm >/dev/null || need_apt+=(nasm)
# jpegli (the JPEG encoder) is C++ built by cmake.
command -v g++ >/dev/null || need_apt+=(g++)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# Headless browser for tests/browser.rs (Debian's build; nothing is downloaded by a tool).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# ACME test CA and its DNS for tests/tls_acme.rs; curl for tests/tls.rs.
command -v pebble >/dev/null && command -v pebble-challtestsrv >/dev/null || need_apt+=(pebble)
command -v curl >/dev/null || need_apt+=(curl)
# tests/cluster.rs: a redis-server per test, and nginx for the URI-hash sample config.
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v nginx >/dev/null || need_apt+=(nginx)
if [ ${#need_apt[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ -f tests/requirements.txt ]; then
  .venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
fi

# Style and lints first: cheap, and clippy's release build is the one the tests reuse.
cargo fmt --check
(cd tests/fuzz && cargo fmt --check)
cargo clippy --release --all-targets -- -D warnings

cargo test --release --all-targets "$@"

# Each cargo-fuzz target: the seed corpus and saved crashes replayed, then a short
# fixed-seed, fixed-count mutation run (reproducible; random fuzzing is tests/fuzz/explore.sh).
bash tests/fuzz/run.sh
