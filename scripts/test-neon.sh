#!/usr/bin/env bash
# The arm64 (NEON) kernel path on any x86 Linux machine: cross-compile the C++ core with its NEON
# kernels and the C++ tests into static aarch64 binaries, and run them under qemu user-mode.
#
#   scripts/test-neon.sh            # needs g++-aarch64-linux-gnu and qemu-user-static (Debian/Ubuntu:
#                                   #   apt-get install -y g++-aarch64-linux-gnu qemu-user-static)
#
# Builds (in build-neon/, or $MLPKIT_NEON_BUILD_DIR):
#   core_tests   = sources.json core + isa_neon + tests      (run as is, i.e. the neon table, and
#                                                             again with MLPKIT_ISA=scalar)
#   kernel_tests = sources.json core + isa_neon + kernel_tests  (checks every table: neon, scalar)
# Exit status: 0 when every test passed, or when the cross compiler or qemu is missing (a
# "SKIP" line says so, so CI can call this unconditionally); non-zero on any build or test failure.
# On an aarch64 host it runs the binaries directly, without qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s.%N)

CXX_AARCH64=${CXX_AARCH64:-aarch64-linux-gnu-g++}
QEMU_AARCH64=${QEMU_AARCH64:-qemu-aarch64-static}
OUT=${MLPKIT_NEON_BUILD_DIR:-build-neon}
JOBS=${JOBS:-2}
# The flags of the native CMake build where they matter (ISO C++17, -O2 or more), static so qemu
# needs no aarch64 sysroot, and the oldest arm64 the project targets.
FLAGS=(-std=c++17 -O2 -ffp-contract=off -static -march=armv8.2-a -Inative -DMLPKIT_VERSION=test -pthread -Wall -Wextra)

elapsed() { awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }
skip() {
  echo "SKIP test-neon: $* (install: apt-get install -y g++-aarch64-linux-gnu qemu-user-static)"
  exit 0
}

native_arm=0
[[ "$(uname -m)" == "aarch64" || "$(uname -m)" == "arm64" ]] && native_arm=1
command -v "$CXX_AARCH64" >/dev/null 2>&1 || { [[ $native_arm == 1 ]] && CXX_AARCH64=g++; }
command -v "$CXX_AARCH64" >/dev/null 2>&1 || skip "no aarch64 cross compiler ($CXX_AARCH64)"
RUN=()
if [[ $native_arm == 0 ]]; then
  command -v "$QEMU_AARCH64" >/dev/null 2>&1 || skip "no qemu user-mode emulator ($QEMU_AARCH64)"
  RUN=("$QEMU_AARCH64")
fi

# The source lists, from the one list CMake and gyp read too.
sources() {
  if command -v node >/dev/null 2>&1; then
    node -e "const s = require('./sources.json'); for (const k of process.argv.slice(1)) for (const f of s[k] || []) console.log(f)" "$@"
  else
    python3 -c "import json, sys; s = json.load(open('sources.json')); [print(f) for k in sys.argv[1:] for f in s.get(k, [])]" "$@"
  fi
}
mapfile -t CORE < <(sources core isa_neon)
mapfile -t CORE_TESTS < <(sources tests)
mapfile -t KERNEL_TESTS < <(sources kernel_tests)
((${#CORE[@]} > 0 && ${#CORE_TESTS[@]} > 0 && ${#KERNEL_TESTS[@]} > 0)) || { echo "test-neon: empty source list in sources.json"; exit 1; }

echo "=== test-neon: $("$CXX_AARCH64" --version | head -1)"
[[ ${#RUN[@]} -gt 0 ]] && echo "=== runner: $("$QEMU_AARCH64" --version | head -1)"
rm -rf "$OUT"
mkdir -p "$OUT/obj"

# Compile every source once, $JOBS at a time; the core objects go into both binaries.
obj() { local f=${1//\//_}; echo "$OUT/obj/${f%.cpp}.o"; }
export CXX_AARCH64 FLAGS_STR="${FLAGS[*]}"
for f in $(printf '%s\n' "${CORE[@]}" "${CORE_TESTS[@]}" "${KERNEL_TESTS[@]}" | sort -u); do echo "$f $(obj "$f")"; done |
  xargs -P "$JOBS" -n 2 sh -c '$CXX_AARCH64 $FLAGS_STR -c "$0" -o "$1" || { echo "test-neon: compiling $0 failed" >&2; exit 255; }' ||
  { echo "test-neon: FAILED to build ($(elapsed) s)"; exit 1; }
core_objs=()
for f in "${CORE[@]}"; do core_objs+=("$(obj "$f")"); done
ct_objs=()
for f in "${CORE_TESTS[@]}"; do ct_objs+=("$(obj "$f")"); done
kt_objs=()
for f in "${KERNEL_TESTS[@]}"; do kt_objs+=("$(obj "$f")"); done
"$CXX_AARCH64" "${FLAGS[@]}" "${ct_objs[@]}" "${core_objs[@]}" -o "$OUT/core_tests" &&
  "$CXX_AARCH64" "${FLAGS[@]}" "${kt_objs[@]}" "${core_objs[@]}" -o "$OUT/kernel_tests" ||
  { echo "test-neon: FAILED to link ($(elapsed) s)"; exit 1; }
file "$OUT/core_tests" 2>/dev/null | sed 's/^/    /' || true
echo "=== built in $(elapsed) s"

failed=()
run() {
  local name=$1
  shift
  echo
  echo "=== $name"
  local t0
  t0=$(date +%s.%N)
  if "$@"; then
    echo "=== $name: passed ($(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }') s)"
  else
    echo "=== $name: FAILED (exit $?)"
    failed+=("$name")
  fi
}
run "core_tests (default table: neon)" "${RUN[@]}" "$OUT/core_tests"
run "core_tests (MLPKIT_ISA=scalar)" env MLPKIT_ISA=scalar "${RUN[@]}" "$OUT/core_tests"
run "kernel_tests (every table)" "${RUN[@]}" "$OUT/kernel_tests"

echo
if ((${#failed[@]})); then
  echo "test-neon: FAILED: ${failed[*]} ($(elapsed) s)"
  exit 1
fi
echo "test-neon: all passed ($(elapsed) s)"
