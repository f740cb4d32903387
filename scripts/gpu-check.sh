#!/usr/bin/env bash
# The GPU session of issue #7 in one command, bounded to ~7.5 minutes: the CUDA C++ tests
# (cuda_tests: every kernel against the CPU core), the vitest CUDA file (tests/93.cuda.test.ts:
# the cuda backend against the CPU through the JS API), the mlpkit bench (bench/cuda.mjs) and
# the PyTorch bench (bench/cuda.py). Everything it finds goes under OUT (default: $OUT/gpu-check
# when the device tool's $OUT is set, else out/gpu-check): env.txt, one log per step, the bench
# tables and summary.txt.
#
# Binaries come from .device/ (scripts/gpu-pack.sh, run on the build machine) or from an earlier
# build in this tree. When the carried CUDA code cannot run here (a driver older than the
# toolkit it was built with) or MLPKIT_GPU_REBUILD=1, cuda_tests (and, given Node headers, the
# addon) are rebuilt with this machine's nvcc for its own GPU architecture.
#
#   bash scripts/gpu-check.sh [OUT]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-}"
[ -n "$out" ] || { [ -n "${OUT:-}" ] && out="$OUT/gpu-check"; } || true
[ -n "$out" ] || out=out/gpu-check
mkdir -p "$out"
out="$(cd "$out" && pwd)"
budget=${MLPKIT_GPU_BUDGET:-450}
start=$(date +%s)
: > "$out/summary.txt"

log() { echo "[$(($(date +%s) - start))s] $*" | tee -a "$out/summary.txt"; }
remaining() { echo $((budget - ($(date +%s) - start))); }
# step NAME LIMIT_S CMD...: runs CMD with its output in OUT/NAME.log, within min(LIMIT, what is left).
step() {
  local name=$1 limit=$2
  shift 2
  local left
  left=$(remaining)
  if [ "$left" -lt 20 ]; then
    log "$name: skipped (time budget spent)"
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  log "$name: start (limit ${limit}s)"
  timeout --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  log "$name: exit $rc$([ $rc -eq 124 ] && echo ' (timed out)')$([ $rc -eq 77 ] && echo ' (skipped: no usable device)')"
  tail -n 3 "$out/$name.log" | sed 's/^/    /' | tee -a "$out/summary.txt"
  return $rc
}

unxz_to() {  # unxz_to FILE.xz DEST: xz, or Python's lzma where xz is missing
  if command -v xz >/dev/null 2>&1; then xz -dc "$1" > "$2"; else
    python3 -c "import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" "$1" "$2"
  fi
}

{
  echo "== nvidia-smi"; nvidia-smi 2>&1
  echo "== nvcc"; nvcc --version 2>&1 || /usr/local/cuda/bin/nvcc --version 2>&1
  echo "== cmake"; cmake --version 2>&1 | head -1
  echo "== python"; python3 -c "import sys; print(sys.version)" 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())" 2>&1
  echo "== cpu"; nproc; uname -a
} > "$out/env.txt" 2>&1

# ---- unpack what gpu-pack.sh carried ----------------------------------------------------------
if [ -d .device ]; then
  if [ -f .device/node.xz ] && ! command -v node >/dev/null 2>&1; then
    mkdir -p /tmp/mlpkit-node && unxz_to .device/node.xz /tmp/mlpkit-node/node && chmod +x /tmp/mlpkit-node/node
    export PATH="/tmp/mlpkit-node:$PATH"
  fi
  for archive in .device/node_modules.tar.xz .device/build.tar.xz; do
    [ -f "$archive" ] && { unxz_to "$archive" /tmp/mlpkit-unpack.tar && tar -xf /tmp/mlpkit-unpack.tar && rm -f /tmp/mlpkit-unpack.tar; }
  done
  if [ -f .device/node-include.tar.xz ]; then
    mkdir -p /tmp/mlpkit-node-include && unxz_to .device/node-include.tar.xz /tmp/mlpkit-include.tar &&
      tar -xf /tmp/mlpkit-include.tar -C /tmp/mlpkit-node-include && rm -f /tmp/mlpkit-include.tar
  fi
fi
have_node=0
command -v node >/dev/null 2>&1 && have_node=1
log "node: $([ $have_node = 1 ] && node --version || echo 'not available: the Node steps are skipped')"

tests_bin=build-cuda/cuda_tests
addon=build-cuda/cuda/mlpkit_cuda.node

# ---- the CUDA C++ tests (rebuilt here when the carried ones cannot run) -----------------------
rebuild=${MLPKIT_GPU_REBUILD:-0}
[ -x "$tests_bin" ] || rebuild=1
if [ "$rebuild" = 0 ]; then
  step cuda_tests 240 "$tests_bin"
  grep -q "older than this build's CUDA runtime" "$out/cuda_tests.log" && rebuild=1 && log "the carried build needs a newer driver: rebuilding here"
fi
if [ "$rebuild" = 1 ] && command -v nvcc >/dev/null 2>&1; then
  # This GPU's architecture only (CMake 3.24's "native" spelled out for older CMake).
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '. ')
  cmake_args=(-S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DMLPKIT_CUDA=ON -DMLPKIT_TESTS=ON "-DCMAKE_CUDA_ARCHITECTURES=${arch:-90}")
  targets=(cuda_tests)
  if [ $have_node = 1 ] && [ -f /tmp/mlpkit-node-include/node/node_api.h ] && [ -d node_modules/node-addon-api ]; then
    # What cmake-js would pass on Linux: the Node headers; Node-API symbols resolve at load time.
    cmake_args+=(-DCMAKE_JS_VERSION=gpu-check -DCMAKE_JS_INC=/tmp/mlpkit-node-include/node)
    targets+=(mlpkit_cuda)
  fi
  step rebuild_configure 120 cmake "${cmake_args[@]}" &&
    step rebuild 300 cmake --build build-gpu --target "${targets[@]}" --parallel "$(nproc)" &&
    { step cuda_tests_rebuilt 240 ctest --test-dir build-gpu -R '^cuda_tests$' --output-on-failure;
      [ -f build-gpu/cuda/mlpkit_cuda.node ] && addon=build-gpu/cuda/mlpkit_cuda.node; }
fi
export MLPKIT_CUDA_ADDON="$PWD/$addon"

# ---- through Node: the vitest file and the mlpkit bench ---------------------------------------
if [ $have_node = 1 ] && [ -f "$addon" ]; then
  node -e "console.log(JSON.stringify(require(process.env.MLPKIT_CUDA_ADDON).info(), null, 1))" > "$out/addon-info.json" 2>&1
  if [ -f node_modules/vitest/vitest.mjs ]; then
    step vitest_cuda 180 node node_modules/vitest/vitest.mjs run tests/93.cuda.test.ts
  else
    log "vitest_cuda: skipped (node_modules/vitest is missing: carry .device from scripts/gpu-pack.sh)"
  fi
  [ -f dist/index.js ] && step bench_mlpkit 150 node bench/cuda.mjs --out "$out" --seconds 0.5
fi

# ---- PyTorch ---------------------------------------------------------------------------------
step bench_torch 200 python3 bench/cuda.py --out "$out" --seconds 0.5 --budget 150

log "done in $(($(date +%s) - start))s; results in $out"
