#!/usr/bin/env bash
# The prebuilt binary must run on any x86-64: only the ISA files may contain AVX2/AVX-512
# instructions, and they may export nothing but their table getter (or, for the weight
# quantiser's AVX2 search and GPTQ's AVX2 loops, their entry points; a weak symbol, e.g. an
# inline function or template instantiation, could be merged by the linker into the code that
# every CPU runs: the classic SIGILL). Checks the object files of a CMake build directory.
#
#   bash scripts/check-isa-isolation.sh build-tests
set -euo pipefail
dir="${1:-build-tests}"
case "$(uname -m)" in x86_64 | amd64) ;; *) echo "check-isa-isolation: x86-64 only, skipped"; exit 0 ;; esac
objs=$(find "$dir" -path '*mlpkit_core.dir*' -name '*.o')
[ -n "$objs" ] || { echo "check-isa-isolation: no core objects under $dir" >&2; exit 1; }
status=0
for o in $objs; do
  case "$o" in
    *kernels_avx2.cpp.o | *kernels_avx512.cpp.o | *qkernels_vnni.cpp.o | *qkernels_avx2.cpp.o | *quantize_avx2.cpp.o | *gptq_avx2.cpp.o)
      extra=$(nm -C "$o" | awk '$2 ~ /^[TDBRWVu]$/ && $0 !~ /mlpkit::(cpu::avx(2|512)_kernels|quant::quant_(vnni|avx2)_kernels)\(\)|mlpkit::quant::(group_errors|add_scaled|sub_scaled|add_panel|sub_panel)_avx2\(/' || true)
      if [ -n "$extra" ]; then echo "FAIL $o exports more than its table getter:"; echo "$extra"; status=1; fi ;;
    *)
      wide=$(objdump -d --no-show-raw-insn "$o" | grep -cE '%ymm|%zmm|%k[0-7]' || true)
      if [ "$wide" != "0" ]; then echo "FAIL $o has $wide AVX2/AVX-512 instructions outside the ISA files"; status=1; fi ;;
  esac
done
[ $status = 0 ] && echo "check-isa-isolation: ok ($(echo "$objs" | wc -l) objects)"
exit $status
