#!/usr/bin/env bash
# Refreshes the reference docs generated from the .td files (docs/generated)
# after a change to an op, type, attribute or pass definition. The test suite
# (test/docs/generated-docs.test) fails while they are out of date.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${QLR_BUILD_DIR:-$root/build}
cmake --build "$build" --target qlr-doc
mkdir -p "$root/docs/generated"
cp "$build"/docs/generated/*.md "$root/docs/generated/"
echo "updated: $(ls "$root"/docs/generated | tr '\n' ' ')"
