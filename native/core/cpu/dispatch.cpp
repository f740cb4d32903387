// Chooses the kernel table once per process: the widest ISA that both the CPU (cpuid) and the
// OS (xgetbv: it saves the vector registers on context switches) support, or a lower one named
// by MLPKIT_ISA. Compiled with the baseline flags: nothing here may use a wide instruction.
#include <cstdlib>
#include <cstring>

#include "core/cpu/kernels.h"

#if (defined(__x86_64__) || defined(_M_X64)) && !defined(_MSC_VER)
#include <cpuid.h>
#elif defined(_M_X64)
#include <immintrin.h>
#include <intrin.h>
#endif

namespace mlpkit::cpu {
namespace {

struct Isa {
  const char* name;
  const Kernels& (*table)();
};

#if defined(__x86_64__) || defined(_M_X64)
void cpuid(unsigned leaf, unsigned sub, unsigned r[4]) {
#if defined(_MSC_VER)
  int out[4];
  __cpuidex(out, static_cast<int>(leaf), static_cast<int>(sub));
  for (int i = 0; i < 4; ++i) r[i] = static_cast<unsigned>(out[i]);
#else
  __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
#endif
}

unsigned long long xcr0() {
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
#endif
}

struct X86Features {
  bool avx2_fma = false;
  bool avx512f = false;
  bool avx512_vnni = false;  // + BW and VL: the quantised kernels
};

X86Features detect() {
  X86Features f;
  unsigned r[4];
  cpuid(0, 0, r);
  const unsigned max_leaf = r[0];
  if (max_leaf < 7) return f;
  cpuid(1, 0, r);
  const bool osxsave = (r[2] >> 27) & 1, fma = (r[2] >> 12) & 1, avx = (r[2] >> 28) & 1;
  if (!osxsave || !avx) return f;
  const unsigned long long xcr = xcr0();
  const bool ymm_state = (xcr & 0x6) == 0x6;     // SSE + AVX state
  const bool zmm_state = (xcr & 0xe6) == 0xe6;   // + opmask, ZMM_Hi256, Hi16_ZMM
  cpuid(7, 0, r);
  const bool avx2 = (r[1] >> 5) & 1, avx512f = (r[1] >> 16) & 1;
  const bool avx512bw = (r[1] >> 30) & 1, avx512vl = (r[1] >> 31) & 1, vnni = (r[2] >> 11) & 1;
  f.avx2_fma = ymm_state && avx2 && fma;
  f.avx512f = f.avx2_fma && zmm_state && avx512f;
  f.avx512_vnni = f.avx512f && avx512bw && avx512vl && vnni;
  return f;
}
#endif

// Supported ISAs, widest first, computed once.
struct Supported {
  Isa list[4];
  const char* names[4];
  std::size_t count = 0;
  bool vnni = false;
  Supported() {
#if defined(__x86_64__) || defined(_M_X64)
    const X86Features f = detect();
    vnni = f.avx512_vnni;
    if (f.avx512f) add({"avx512", avx512_kernels});
    if (f.avx2_fma) add({"avx2", avx2_kernels});
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
    add({"neon", neon_kernels});
#endif
    add({"scalar", scalar_kernels});
  }
  void add(Isa isa) {
    names[count] = isa.name;
    list[count++] = isa;
  }
};

const Supported& supported() {
  static const Supported s;
  return s;
}

const Kernels& choose() {
  const Supported& s = supported();
  // MLPKIT_ISA names a lower ISA to force (tests run every path this way). A name this machine
  // cannot run, or does not know, leaves the widest in place: forcing must never mean SIGILL.
  if (const char* want = std::getenv("MLPKIT_ISA")) {
    for (std::size_t i = 0; i < s.count; ++i) {
      if (std::strcmp(want, s.list[i].name) == 0) return s.list[i].table();
    }
  }
  return s.list[0].table();
}

}  // namespace

const Kernels& kernels() {
  // A function-local static: initialised once, thread-safe, immutable afterwards, so it is safe
  // to share across worker_threads environments.
  static const Kernels& chosen = choose();
  return chosen;
}

bool avx512_vnni_in_use() {
  return supported().vnni && std::strcmp(kernels().isa, "avx512") == 0;
}

const char* const* supported_isas(std::size_t* count) {
  *count = supported().count;
  return supported().names;
}

}  // namespace mlpkit::cpu
