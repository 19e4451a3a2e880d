#!/usr/bin/env bash
# The GPU check in one command: build, test, sanitize and benchmark on the visible GPU. Each
# stage has its own time limit and writes its log under $OUT as it goes, so a stage cut short
# still leaves what it did. A clean run takes about 8 minutes on an H200 host with 16 cores; every
# limit reached, about 13. Name stages (and GPU_RUN_BENCH runs) to run fewer.
#
#   bash benchmarks/gpu_run.sh [--dry-run] [build] [test] [sanitize] [bench]   (default: all four)
#
#   build     the module for the visible GPU only (arch 9.0 on an H200), all cores        150 s
#   test      whether a C++ error reaches Python here (benchmarks/native_errors.py: seconds,
#             or up to 150 s of diagnosis when one crashes); the test suite's GPU cases
#             (the emulated ones are proven on the CPU) and bad input on every device; a test
#             that crashed its worker runs again under a debugger (40 s more)              100 s
#   sanitize  compute-sanitizer memcheck, then racecheck, on tests/sanitize_kernels.py      60 s
#   bench     the cases that decide the targets, fp32 and bf16 + channels_last, in four
#             runs, each with its own limit and JSON so a run cut short loses only itself:
#             the device's ceilings and the eager and CUDA-graph DCGAN steps (120 s); the
#             per-op groups of the largest layers (30 s); StyleGAN's ops and a StyleGAN2
#             step with R1 (70 s); torch.compile's steps (the slowest to warm up, so last,
#             50 s). Then benchmarks/report.py merges the runs into one report.
#             GPU_RUN_BENCH="steps stylegan" (say) runs only the runs it names           270 s
#
# --dry-run: on a machine with no GPU, runs every stage's own checks (the module imports, pytest
# collects a non-empty selection with the same -k/-m, the scripts parse) and prints the limits,
# so that a typo cannot waste a GPU's time. Logs go to $OUT when it is set, else
# benchmarks/results/gpu-latest, 8 files: summary.txt (with the report's targets), build.log,
# tests.log, sanitize.log, bench.log and the report's <device>-<date>.{json,md,png} (the runs'
# bench-<run>.json until the report has merged them).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [[ ${1:-} == --dry-run ]]; then DRY=1; shift; fi
OUT=${OUT:-benchmarks/results/gpu-latest}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MAX_JOBS=${MAX_JOBS:-$(nproc)}
PY=${PYTHON:-python3}
stages=${*:-build test sanitize bench}
status=0
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }
stage() { say "=== $1, limit ${2}s ($(date -u +%T))"; }
# limited SECONDS LOG CMD...: runs CMD with its output in LOG, killed after SECONDS.
limited() {
  local seconds=$1 log=$2; shift 2
  timeout --kill-after=10 "$seconds" "$@" >> "$log" 2>&1
  local rc=$?
  [[ $rc == 124 || $rc == 137 ]] && say "--- cut short at its ${seconds}s limit: $*"
  return $rc
}

# collects LABEL PYTEST-ARGS...: (dry run) pytest must collect a non-empty selection.
collects() {
  local label=$1; shift
  local line
  line=$($PY -m pytest "$@" --collect-only -q 2>&1 | tail -1)
  say "$label: $line"
  [[ $line =~ ^[0-9]+(/[0-9]+)?\ tests?\ collected ]] || { say "--- nothing collected: $*"; status=1; }
}

BUILD_S=150 TEST_S=100 SANITIZE_S=60
# The GPU cases, and bad input on every device: an error raised in C++ must reach Python as the
# documented exception on this machine's compiler and torch too, never as a crash.
TESTS_K="cuda or graph or test_bad_input"
# name:seconds:selection ("fastgan-graph", not "graph": stock-compile-max-autotune-no-cudagraphs
# would match, and its autotuning alone outlasts the run). Steps: the device's ceilings (copy
# bandwidth, matmul rate: the report's roofline), the eager and CUDA-graph variants; per op: the
# two largest BatchNorm layers of DCGAN-64 (G3: 64 channels at 32x32, D1: 128 at 16x16), the
# conv+act layers and InstanceNorm+ReLU at CycleGAN's shapes (channels_last: the batch of one,
# which runs in place; a GPU copies a channels_last batch of several as before); StyleGAN: each
# op forward+backward at 512 channels x 32 px (torch.compile of their reference path aside: its
# compiles would outlast the run), and the StyleGAN2 step; compile: torch.compile's
# default and reduce-overhead modes (max-autotune would spend minutes).
BENCH_RUNS=("steps:120:device_ceiling or (train_step and (eager or fastgan-graph))"
            "ops:30:((bn_act or bn_alone) and (G3 or D1)) or conv_act or (in_act and not (residual and nhwc)) or bn1d"
            "stylegan:70:(stylegan_op and fwd+bwd and 512x32px and not stock-compile) or stylegan2_step"
            "compile:50:train_step and compile and not max-autotune")
if [[ -n ${GPU_RUN_BENCH:-} ]]; then
  chosen=()
  for run in "${BENCH_RUNS[@]}"; do [[ " $GPU_RUN_BENCH " == *" ${run%%:*} "* ]] && chosen+=("$run"); done
  BENCH_RUNS=("${chosen[@]}")
fi
BENCH_S=0
for run in "${BENCH_RUNS[@]}"; do run=${run#*:}; BENCH_S=$((BENCH_S + ${run%%:*})); done

if [[ $stages == *build* ]]; then
  stage build $BUILD_S
  if ((DRY)); then
    $PY -c "import fastgan; print('fastgan imports, backend', fastgan.backend())" | tee -a "$SUMMARY" || status=1
  else
    arch=$($PY -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")
    FASTGAN_FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$arch \
      limited $BUILD_S "$OUT/build.log" $PY -m pip install --no-deps --no-build-isolation -e . \
      || { tail -40 "$OUT/build.log"; say "build failed"; exit 1; }
    { $PY -m fastgan info; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; } 2>&1 \
      | tee -a "$SUMMARY"
  fi
fi

if [[ $stages == *test* ]]; then
  stage test $TEST_S
  select=(tests -m "not cuda_emu" -k "$TESTS_K" -p no:cacheprovider)
  if ((DRY)); then
    $PY -m py_compile benchmarks/native_errors.py && say "benchmarks/native_errors.py compiles" || status=1
    collects tests "${select[@]}"
  else
    # First, whether an error raised in C++ reaches Python here at all (a few seconds; when it
    # does not, the probe's minimal extensions and backtrace take up to 2 minutes more).
    echo "=== benchmarks/native_errors.py" >> "$OUT/tests.log"
    limited 150 "$OUT/tests.log" $PY benchmarks/native_errors.py
    grep -E ": (exit|signal|timed out)|^result:" "$OUT/tests.log" | tee -a "$SUMMARY"
    xdist=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")
    limited $TEST_S "$OUT/tests.log" $PY -m pytest "${select[@]}" -q -ra $xdist || status=1
    grep -E "passed|failed|error" "$OUT/tests.log" | tail -1 | tee -a "$SUMMARY"
    grep -E "^(FAILED|ERROR)" "$OUT/tests.log" | head -40 | tee -a "$SUMMARY"
    # A test that crashed its worker runs again alone under a debugger, for the native backtrace
    # (a run cut short has no summary to name it: then the first bad-input test, on the CPU).
    crashed=$(grep -oE "^FAILED [^ ]+ - worker '[^']+' cr" "$OUT/tests.log" | head -1 | cut -d' ' -f2)
    if [[ -z $crashed ]] && grep -q "Fatal Python error" "$OUT/tests.log"; then
      crashed="tests/test_bad_input.py::test_wrong_rank[fused-cpu]"
    fi
    debugger=$(command -v cuda-gdb || command -v gdb)
    if [[ -n $crashed && -n $debugger ]]; then
      say "--- $crashed crashed its worker; its backtrace under $(basename "$debugger") is at the end of tests.log"
      echo "=== $crashed under $debugger" >> "$OUT/tests.log"
      limited 40 "$OUT/tests.log" "$debugger" -batch -ex "set pagination off" -ex run -ex "bt 40" \
        --args $PY -m pytest "$crashed" -p no:cacheprovider -q -s
    fi
  fi
fi

if [[ $stages == *sanitize* ]]; then
  stage sanitize $SANITIZE_S
  if ((DRY)); then
    $PY -m py_compile tests/sanitize_kernels.py && say "tests/sanitize_kernels.py compiles" || status=1
    command -v compute-sanitizer > /dev/null || say "(no compute-sanitizer on this machine)"
  else
    # memcheck first (a few seconds); racecheck, many times slower, gets whatever is left.
    until=$((SECONDS + SANITIZE_S))
    for tool in memcheck racecheck; do
      echo "--- compute-sanitizer --tool $tool" >> "$OUT/sanitize.log"
      limited $((until - SECONDS > 5 ? until - SECONDS : 5)) "$OUT/sanitize.log" \
        compute-sanitizer --tool $tool --error-exitcode 9 $PY tests/sanitize_kernels.py
      rc=$?
      say "--- $tool exit code $rc"
      [[ $rc == 0 ]] || status=1
    done
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|sanitize_kernels" "$OUT/sanitize.log" | tee -a "$SUMMARY"
  fi
fi

if [[ $stages == *bench* ]]; then
  stage bench $BENCH_S
  for run in "${BENCH_RUNS[@]}"; do
    name=${run%%:*} run=${run#*:}
    seconds=${run%%:*} select=(benchmarks -k "${run#*:}" -p no:cacheprovider)
    if ((DRY)); then
      collects "$name (${seconds}s)" "${select[@]}"
    else
      echo "--- $name" >> "$OUT/bench.log"
      # Each line stamped with the time it was written: -v prints a line as each case ends, so a
      # run cut at its limit still shows which cases took the time.
      limited "$seconds" "$OUT/bench.log" bash -c \
        '"$@" 2>&1 | while IFS= read -r line; do printf "%(%T)T %s\n" -1 "$line"; done; exit ${PIPESTATUS[0]}' _ \
        $PY -m pytest "${select[@]}" -v --benchmark-json="$OUT/bench-$name.json" || status=1
      result=$(sed -n "/^--- $name\$/,\$p" "$OUT/bench.log" | grep -E "passed|failed|error" | tail -1)
      say "$name: ${result:-no pytest summary (cut short?)}"
    fi
  done
  if ((DRY)); then
    $PY benchmarks/report.py --help > /dev/null && say "benchmarks/report.py runs" || status=1
  else
    # One report of all runs: <device>-<date>.{json,md,png} beside the logs; its targets go into
    # the summary. The runs' own JSON files go once the merged one is written; a run cut short
    # before pytest wrote its JSON leaves an empty file, which is dropped.
    find "$OUT" -maxdepth 1 -name "bench-*.json" -empty -delete
  fi
  if ((!DRY)) && compgen -G "$OUT/bench-*.json" > /dev/null; then
    if $PY benchmarks/report.py "$OUT"/bench-*.json --out "$OUT" > "$OUT/report.txt" 2>&1; then
      sed -n '/^## Targets/,$p' "$OUT/report.txt" | grep -v "^wrote " >> "$SUMMARY"
      rm -f "$OUT"/bench-*.json "$OUT/report.txt"
    else
      say "--- benchmarks/report.py failed:"; tail -20 "$OUT/report.txt" | tee -a "$SUMMARY"; status=1
    fi
  fi
fi
say "=== done (status $status, $(date -u +%T))"
exit $status
