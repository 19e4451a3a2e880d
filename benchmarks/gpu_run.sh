#!/usr/bin/env bash
# The whole GPU validation in one call, for a machine that has a GPU and its own torch:
#   bash benchmarks/gpu_run.sh [build] [test] [sanitize] [bench]     (default: all four)
# Logs go to $OUT (the device tool's folder) or benchmarks/results/gpu-latest.
set -uo pipefail
OUT=${OUT:-benchmarks/results/gpu-latest}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}
stages=${*:-build test sanitize bench}
status=0
stage() { echo "=== $1 ($(date -u +%T))"; }

if [[ $stages == *build* ]]; then
  stage build
  $PY -m pip install --no-deps --no-build-isolation -e . > "$OUT/build.log" 2>&1 \
    || { tail -60 "$OUT/build.log"; exit 1; }
  $PY -m fastgan info | tee "$OUT/info.txt"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$OUT/info.txt"
fi

if [[ $stages == *test* ]]; then
  stage test
  xdist=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")
  $PY -m pytest tests -q -ra -p no:cacheprovider $xdist > "$OUT/tests.log" 2>&1 || status=1
  grep -E "passed|failed|error" "$OUT/tests.log" | tail -3
  grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -40
fi

if [[ $stages == *sanitize* ]]; then
  stage sanitize
  : > "$OUT/sanitizer.log"
  for tool in memcheck racecheck synccheck; do
    echo "--- compute-sanitizer --tool $tool" >> "$OUT/sanitizer.log"
    compute-sanitizer --tool $tool --error-exitcode 9 $PY tests/sanitize_kernels.py >> "$OUT/sanitizer.log" 2>&1
    rc=$?
    echo "--- $tool exit code $rc" >> "$OUT/sanitizer.log"
    [[ $rc == 0 ]] || status=1
  done
  grep -E "^---|ERROR SUMMARY|RACECHECK SUMMARY|SYNCCHECK SUMMARY|sanitize_kernels" "$OUT/sanitizer.log"
fi

if [[ $stages == *bench* ]]; then
  stage bench
  # BENCH_K selects part of the suite (pytest -k), to split it over calls.
  $PY -m pytest benchmarks -q -p no:cacheprovider ${BENCH_K:+-k "$BENCH_K"} --benchmark-json="$OUT/bench.json" \
    > "$OUT/bench.log" 2>&1 || status=1
  tail -5 "$OUT/bench.log"
  $PY benchmarks/report.py "$OUT/bench.json" --out "$OUT" 2>&1 | tail -60 || status=1
fi
stage "done (status $status)"
exit $status
