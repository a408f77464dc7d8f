#!/usr/bin/env bash
# Runs the server tests (pytest + the openai client) against a built binary; prints a pytest summary.
# Usage: tests/server/run_tests.sh [path/to/bitexact]   (default: build/apps/bitexact)
set -euo pipefail
cd "$(dirname "$0")/../.."
exec python3 -m pytest tests/server -q --bitexact-bin "${1:-build/apps/bitexact}"
