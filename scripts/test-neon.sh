#!/usr/bin/env bash
# The arm64 (NEON) kernel path on any x86 Linux machine: cross-compile the C++ core with its NEON
# kernels and the C++ tests into static aarch64 binaries, and run them under qemu user-mode.
#
#   scripts/test-neon.sh            # needs g++-aarch64-linux-gnu and qemu-user-static (Debian/Ubuntu:
#                                   #   apt-get install -y g++-aarch64-linux-gnu qemu-user-static)
#
# Builds (in build-neon/, or $MLPKIT_NEON_BUILD_DIR), the core being sources.json core + isa_neon
# + isa_neon_dotprod (that one file with +dotprod, as CMake and gyp compile it):
#   core_tests         = core + tests         (run as is, i.e. the neon table, and with MLPKIT_ISA=scalar)
#   kernel_tests       = core + kernel_tests  (checks every float table: neon, scalar)
#   quant_kernel_tests = core + quant_kernel_tests, run on qemu's "max" CPU, which has dotprod (the
#                        sdot table must be chosen; it, the ARMv8.0 table and scalar are checked), on
#                        a Cortex-A72, which has not (the ARMv8.0 table must be chosen: the runtime
#                        check, and the baseline build running on an ARMv8.0 core), and with
#                        MLPKIT_ISA=scalar
# and checks that no object but the dotprod one holds an sdot instruction, and that the dotprod one
# exports nothing but its table getter (an inline function compiled there could be the copy the
# linker keeps for everyone; the exception-handling DW.ref.* data words are not code).
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
# needs no aarch64 sysroot, and the baseline the native builds get on arm64 (GCC's default,
# ARMv8.0-A), so the binaries must also run on a core without the v8.1+ extensions.
FLAGS=(-std=c++17 -O2 -ffp-contract=off -static -march=armv8-a -Inative -DMLPKIT_VERSION=test -pthread -Wall -Wextra)
DOTPROD_FLAGS=-march=armv8.2-a+dotprod
OBJDUMP_AARCH64=${OBJDUMP_AARCH64:-${CXX_AARCH64%g++}objdump}
NM_AARCH64=${NM_AARCH64:-${CXX_AARCH64%g++}nm}

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
mapfile -t CORE < <(sources core isa_neon isa_neon_dotprod)
mapfile -t DOTPROD < <(sources isa_neon_dotprod)
mapfile -t CORE_TESTS < <(sources tests)
mapfile -t KERNEL_TESTS < <(sources kernel_tests)
mapfile -t QUANT_TESTS < <(sources quant_kernel_tests)
((${#CORE[@]} > 0 && ${#DOTPROD[@]} > 0 && ${#CORE_TESTS[@]} > 0 && ${#KERNEL_TESTS[@]} > 0 && ${#QUANT_TESTS[@]} > 0)) ||
  { echo "test-neon: empty source list in sources.json"; exit 1; }

echo "=== test-neon: $("$CXX_AARCH64" --version | head -1)"
[[ ${#RUN[@]} -gt 0 ]] && echo "=== runner: $("$QEMU_AARCH64" --version | head -1)"
rm -rf "$OUT"
mkdir -p "$OUT/obj"

# Compile every source once, $JOBS at a time; the core objects go into both binaries.
obj() { local f=${1//\//_}; echo "$OUT/obj/${f%.cpp}.o"; }
# The dotprod files get $DOTPROD_FLAGS after the common flags (the last -march wins).
export CXX_AARCH64 FLAGS_STR="${FLAGS[*]}" DOTPROD_FLAGS DOTPROD_LIST=" ${DOTPROD[*]} "
for f in $(printf '%s\n' "${CORE[@]}" "${CORE_TESTS[@]}" "${KERNEL_TESTS[@]}" "${QUANT_TESTS[@]}" | sort -u); do echo "$f $(obj "$f")"; done |
  xargs -P "$JOBS" -n 2 sh -c 'case "$DOTPROD_LIST" in *" $0 "*) extra=$DOTPROD_FLAGS ;; *) extra= ;; esac
    $CXX_AARCH64 $FLAGS_STR $extra -c "$0" -o "$1" || { echo "test-neon: compiling $0 failed" >&2; exit 255; }' ||
  { echo "test-neon: FAILED to build ($(elapsed) s)"; exit 1; }
core_objs=()
for f in "${CORE[@]}"; do core_objs+=("$(obj "$f")"); done
ct_objs=()
for f in "${CORE_TESTS[@]}"; do ct_objs+=("$(obj "$f")"); done
kt_objs=()
for f in "${KERNEL_TESTS[@]}"; do kt_objs+=("$(obj "$f")"); done
qt_objs=()
for f in "${QUANT_TESTS[@]}"; do qt_objs+=("$(obj "$f")"); done
"$CXX_AARCH64" "${FLAGS[@]}" "${ct_objs[@]}" "${core_objs[@]}" -o "$OUT/core_tests" &&
  "$CXX_AARCH64" "${FLAGS[@]}" "${kt_objs[@]}" "${core_objs[@]}" -o "$OUT/kernel_tests" &&
  "$CXX_AARCH64" "${FLAGS[@]}" "${qt_objs[@]}" "${core_objs[@]}" -o "$OUT/quant_kernel_tests" ||
  { echo "test-neon: FAILED to link ($(elapsed) s)"; exit 1; }
file "$OUT/core_tests" 2>/dev/null | sed 's/^/    /' || true
echo "=== built in $(elapsed) s"

# sdot only where the CPU has been asked first, and nothing shared out of the file that has it.
isolation=()
if command -v "$OBJDUMP_AARCH64" >/dev/null 2>&1 && command -v "$NM_AARCH64" >/dev/null 2>&1; then
  for f in "${CORE[@]}"; do
    o=$(obj "$f")
    if [[ " ${DOTPROD[*]} " == *" $f "* ]]; then
      n=$("$OBJDUMP_AARCH64" -d "$o" | grep -cw sdot || true)
      [[ $n -gt 0 ]] || isolation+=("$f has no sdot: built without $DOTPROD_FLAGS?")
      extra=$("$NM_AARCH64" -C "$o" | awk '$2 ~ /^[TDBRWVu]$/ && $0 !~ /mlpkit::quant::quant_neon_dotprod_kernels\(\)/ && $3 !~ /^DW\.ref\./' || true)
      [[ -z $extra ]] || isolation+=("$f exports more than its table getter: $extra")
    else
      n=$("$OBJDUMP_AARCH64" -d "$o" | grep -cwE 'sdot|udot' || true)
      [[ $n == 0 ]] || isolation+=("$f has $n sdot/udot instructions outside the dotprod file")
    fi
  done
  if ((${#isolation[@]})); then
    printf 'test-neon: FAIL %s\n' "${isolation[@]}"
  else
    echo "=== isolation: sdot only in ${DOTPROD[*]}, which exports only its table getter"
  fi
else
  echo "=== isolation: not checked ($OBJDUMP_AARCH64 or $NM_AARCH64 missing)"
fi

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
if [[ $native_arm == 0 ]]; then
  # qemu lets the test pick the CPU, so it can require the table each one must get.
  run "quant_kernel_tests (CPU with dotprod: sdot, ARMv8.0 and scalar tables)" \
    env QEMU_CPU=max MLPKIT_EXPECT_QUANT_TABLE=neon-dotprod "${RUN[@]}" "$OUT/quant_kernel_tests"
  run "quant_kernel_tests (Cortex-A72, no dotprod: ARMv8.0 and scalar tables)" \
    env QEMU_CPU=cortex-a72 MLPKIT_EXPECT_QUANT_TABLE=neon "${RUN[@]}" "$OUT/quant_kernel_tests"
else
  run "quant_kernel_tests (this CPU's tables)" "$OUT/quant_kernel_tests"
fi
run "quant_kernel_tests (MLPKIT_ISA=scalar)" env MLPKIT_ISA=scalar MLPKIT_EXPECT_QUANT_TABLE=scalar "${RUN[@]}" "$OUT/quant_kernel_tests"

((${#isolation[@]} == 0)) || failed+=("isolation")
echo
if ((${#failed[@]})); then
  echo "test-neon: FAILED: ${failed[*]} ($(elapsed) s)"
  exit 1
fi
echo "test-neon: all passed ($(elapsed) s)"
