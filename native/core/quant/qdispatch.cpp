// Chooses the quantised kernel table once per process. It follows the float table (cpu::kernels(),
// which honours MLPKIT_ISA), so MLPKIT_ISA=avx2 / neon / scalar runs these paths too, and adds
// what the float kernels do not need: AVX-512 VNNI on x86, the dotprod extension on arm64.
// Compiled with the baseline flags: nothing here may use an optional instruction.
#include <cstring>

#include "core/cpu/kernels.h"
#include "core/quant/qkernels.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace mlpkit::quant {

#if defined(__aarch64__) || defined(_M_ARM64)
bool cpu_has_dotprod() {
#if defined(__aarch64__) && defined(__linux__)
  // The kernel sets HWCAP_ASIMDDP (asm/hwcap.h; not every libc's headers have it) only when the
  // core has sdot/udot and user space may run them; Android's bionic has getauxval too.
  constexpr unsigned long kHwcapAsimddp = 1ul << 20;
  return (getauxval(AT_HWCAP) & kHwcapAsimddp) != 0;
#elif defined(__aarch64__) && defined(__APPLE__)
  int v = 0;
  std::size_t size = sizeof v;
  return sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &size, nullptr, 0) == 0 && v != 0;
#else
  return false;  // no portable way to ask: the ARMv8.0 kernels are always safe
#endif
}
#endif

namespace {

const QuantKernels& choose() {
  if (std::strcmp(cpu::kernels().isa, "scalar") == 0) return quant_scalar_kernels();
#if defined(__x86_64__) || defined(_M_X64)
  // Any x86 table but scalar means AVX2 + FMA at least.
  return cpu::avx512_vnni_in_use() ? quant_vnni_kernels() : quant_avx2_kernels();
#elif defined(__aarch64__) || defined(_M_ARM64)
  // The CPU first: the table getter of a dotprod build runs code compiled for dotprod.
  if (cpu_has_dotprod()) {
    if (const QuantKernels* k = quant_neon_dotprod_kernels()) return *k;
  }
  return quant_neon_kernels();
#else
  return quant_scalar_kernels();
#endif
}

}  // namespace

const QuantKernels& quant_kernels() {
  static const QuantKernels& chosen = choose();
  return chosen;
}

}  // namespace mlpkit::quant
