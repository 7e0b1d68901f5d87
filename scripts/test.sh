#!/usr/bin/env bash
# Installs what is missing, builds QLR and runs every test suite:
#   lit (FileCheck tests under test/), GoogleTest (unittests/, through ctest)
#   and pytest (test/python); the numerics, calibration and executing lit
#   tests again at every lower instruction-set level the host supports
#   (QLR_MAX_SIMD); and a portable-numerics build's digest tests
#   (build-portable/). Exits non-zero if anything fails.
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

# The host's own instruction-set level ran above. Every lower level the build
# dispatches to runs again here, capped with QLR_MAX_SIMD: the numerics and
# calibration unit tests and every lit test that executes code (mlir-runner,
# qlr-run).
simd_line=$(QLR_MAX_SIMD=native "$QLR_BUILD_DIR/bin/qlr-run" --version | sed -n "s/^ *\(QLR numerics\)/\1/p")
host_simd=$(sed -n 's/.*(host \([a-z0-9]*\)).*/\1/p' <<<"$simd_line")
qlr_log "instruction sets: host ${host_simd:-unknown}; $simd_line"
mapfile -t executing < <(cd "$QLR_ROOT" && grep -rlE 'mlir-runner|qlr-run' test \
  --include='*.mlir' --include='*.test' | grep -v /Inputs/ | sort)
for level in portable avx2; do
  case "$host_simd:$level" in
    avx2:portable | avx512:portable | avx512:avx2) ;;
    *) continue ;;
  esac
  qlr_log "QLR_MAX_SIMD=$level: numerics and ${#executing[@]} executing lit tests"
  for t in QLRNumericsTests QLRNumericsLinalgTests; do
    QLR_MAX_SIMD=$level "$QLR_BUILD_DIR/unittests/$t" --gtest_brief=1 \
      --gtest_output="xml:$results/gtest-$level-$t.xml" || status=1
  done
  QLR_MAX_SIMD=$level lit -s --xunit-xml-output "$results/lit-$level.xml" \
    "${executing[@]/#/$QLR_BUILD_DIR/}" || status=1
done

# A second configuration: portable numerics (QLR_NATIVE_NUMERICS=OFF), the
# tools only, and the tests that need it (the same bytes on every x86-64 CPU).
if qlr_build_portable; then
  mapfile -t portable < <(cd "$QLR_ROOT" && grep -rl 'REQUIRES: portable-numerics' test | sort)
  lit -s --xunit-xml-output "$results/lit-portable-numerics.xml" \
    "${portable[@]/#/$QLR_PORTABLE_BUILD_DIR/}" || status=1
else
  echo "qlr: the portable-numerics build failed" >&2
  status=1
fi

compgen -G "$QLR_BUILD_DIR/python/qlr/_compiler*.so" >/dev/null || {
  echo "qlr: the Python bindings (target qlr-python) were not built" >&2
  status=1
}
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
