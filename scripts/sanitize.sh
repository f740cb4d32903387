#!/usr/bin/env bash
# The sanitizer run: ASan + UBSan builds of the native core, its C++ tests and the Node addon
# (CMake option MLPKIT_SANITIZE=address, in build-asan/), then
#   1. ctest: core_tests, kernel_tests and quant_kernel_tests under the sanitizers (leak checking on);
#   2. node: the fuzz suites with few runs and the async, lifetime and worker tests, with the
#      addon loaded from build-asan (MLPKIT_ADDON_PATH) and the ASan runtime preloaded into the
#      uninstrumented node (LD_PRELOAD). Leak checking is off for node, which leaks by design.
# Any sanitizer report fails the run: reports go to build-asan/reports/, which must stay empty.
#
#   bash scripts/sanitize.sh                   # build (incremental), ctest, node
#   MLPKIT_SANITIZE_NODE_TESTS="tests/70.bad-input.test.ts" bash scripts/sanitize.sh
#   MLPKIT_FUZZ_RUNS=2000 bash scripts/sanitize.sh   # a longer fuzz under the sanitizers
#
# Needs g++ or clang++ with libasan/libubsan (Debian: gcc's own), CMake, and npm ci done.
set -euo pipefail
cd "$(dirname "$0")/.."
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
OUT=build-asan
REPORTS=$PWD/$OUT/reports
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }

echo "--- sanitize: building $OUT (MLPKIT_SANITIZE=address, tests on) ($(elapsed))"
# CUDA off: the sanitizers do not cover device code, and a cuda_tests target here would only
# skip (no GPU), which makes this ctest report a test that did not run.
npx cmake-js compile --out "$OUT" --parallel "$CMAKE_BUILD_PARALLEL_LEVEL" \
  --CDMLPKIT_SANITIZE=address --CDMLPKIT_TESTS=ON --CDMLPKIT_CUDA=OFF >"$OUT.log" 2>&1 || { tail -50 "$OUT.log"; exit 1; }
ADDON=$PWD/$OUT/Release/mlpkit.node
# (grep without -q reads all of ldd's output: -q would exit at the first match and, under
# pipefail, the SIGPIPE it leaves ldd with would read as "not linked".)
if ! ldd "$ADDON" | grep -F libasan >/dev/null; then
  echo "sanitize: $ADDON is not linked against libasan" >&2
  exit 1
fi
rm -rf "$REPORTS" && mkdir -p "$REPORTS"

# halt_on_error / abort: the first report ends the process, and its log file stays behind.
ASAN_COMMON="abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:log_path=$REPORTS/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$REPORTS/ubsan"

echo "--- sanitize: ctest (core_tests, kernel_tests, quant_kernel_tests) ($(elapsed))"
ASAN_OPTIONS="$ASAN_COMMON:detect_leaks=1" ctest --test-dir "$OUT" --output-on-failure

echo "--- sanitize: node with the ASan addon ($(elapsed))"
LIBASAN=$(g++ -print-file-name=libasan.so)
# The package really runs on the sanitized addon (and the ASan runtime came first).
LD_PRELOAD="$LIBASAN" ASAN_OPTIONS="$ASAN_COMMON:detect_leaks=0" MLPKIT_ADDON_PATH="$ADDON" node --input-type=module -e "
  import { info, Mlp } from './dist/index.js';
  const i = info();
  if (!i.native.available) { console.error('sanitize: the ASan addon did not load:', i.native.error); process.exit(1); }
  new Mlp({ inputs: 2, layers: [{ units: 2 }] }).predict(new Float32Array(2));
  console.log('sanitize: node loads', process.env.MLPKIT_ADDON_PATH, '(' + i.isa + ')');
"
TESTS=${MLPKIT_SANITIZE_NODE_TESTS:-tests/86.fuzz-api.test.ts tests/86.argument-sweep.test.ts tests/87.fuzz-files.test.ts tests/88.lifetime-and-workers.test.ts tests/89.numeric-edges.test.ts tests/80.async-and-lifetime.test.ts tests/70.bad-input.test.ts tests/91.quant-native.test.ts tests/92.sparse.test.ts tests/94.sparse-int8.test.ts tests/40.native-vs-reference.test.ts tests/96.server-socket-path.test.ts tests/91.quant-gptq.test.ts}
# shellcheck disable=SC2086
LD_PRELOAD="$LIBASAN" ASAN_OPTIONS="$ASAN_COMMON:detect_leaks=0" MLPKIT_ADDON_PATH="$ADDON" \
  MLPKIT_EXPECT_NATIVE=1 MLPKIT_FUZZ_RUNS=${MLPKIT_FUZZ_RUNS:-40} MLPKIT_SANITIZED=1 \
  npx vitest run $TESTS

if [ -n "$(ls -A "$REPORTS")" ]; then
  echo "sanitize: sanitizer reports in $REPORTS:" >&2
  head -n 60 "$REPORTS"/* >&2
  exit 1
fi
echo "--- sanitize: no sanitizer reports ($(elapsed))"
