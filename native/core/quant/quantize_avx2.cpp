// The weight quantiser's scale search (quantize_search.inl) compiled with -mavx2: its double
// arithmetic runs four lanes wide instead of SSE2's two. One Zen 4 core, 4096 x 4096 int4 g32
// through the addon (MLPKIT_ISA=scalar for the baseline build): 125 -> 104 ms symmetric,
// 213 -> 167 ms asymmetric, the same bytes. (The whole quantiser built for AVX-512 was slower
// than for AVX2 there: 124 / 172 against 99 / 151 ms.)
#if defined(__x86_64__) || defined(_M_X64)
#include "core/quant/quantize_avx2.h"

namespace mlpkit::quant {
namespace {

#include "core/quant/quantize_search.inl"

}  // namespace

void group_errors_avx2(const float* row, std::size_t len, const double* s, const double* z, std::size_t count,
                       double qmin, double qmax, double* e) {
  group_errors_of(row, len, s, z, count, qmin, qmax, e);
}

}  // namespace mlpkit::quant
#endif
