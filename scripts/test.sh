#!/usr/bin/env bash
# Installs what is missing, builds QLR and runs every test suite:
#   lit (FileCheck tests under test/), GoogleTest (unittests/, through ctest)
#   and pytest (test/python). Exits non-zero if anything fails.
# The last line is the total, e.g. "qlr: 512 passed, 0 failed".
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
qlr_setup || { echo "qlr: setup or build failed" >&2; exit 1; }

results=$QLR_BUILD_DIR/test-results
rm -rf "$results" && mkdir -p "$results"
status=0

qlr_log "format"
if command -v clang-format >/dev/null; then
  bash "$QLR_ROOT/scripts/check-format.sh" || status=1
else
  echo "clang-format not installed: format check skipped"
fi

qlr_log "lit"
lit -sv --xunit-xml-output "$results/lit.xml" "$QLR_BUILD_DIR/test" || status=1

qlr_log "GoogleTest (ctest)"
ctest --test-dir "$QLR_BUILD_DIR" -j "$(nproc)" --output-on-failure --no-tests=error \
  --output-junit "$results/ctest.xml" | tail -n 3 || status=1
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

qlr_log "pytest"
QLR_BUILD_DIR=$QLR_BUILD_DIR "$QLR_VENV/bin/python" -m pytest -q \
  --junitxml "$results/pytest.xml" "$QLR_ROOT/test/python" || status=1

"$QLR_VENV/bin/python" - "$results" <<'PY' || status=1
import sys, pathlib, xml.etree.ElementTree as ET
total = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.xml")):
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for suite in suites:
        for key in total:
            total[key] += int(suite.get(key, 0) or 0)
failed = total["failures"] + total["errors"]
passed = total["tests"] - failed - total["skipped"]
print(f"qlr: {passed} passed, {failed} failed, {total['skipped']} skipped")
sys.exit(1 if failed or total["tests"] == 0 else 0)
PY
exit $status
