// GPTQ's inner loops (gptq_loops.inl) compiled with -mavx2: four double lanes instead of
// SSE2's two, the same operations per element, so the same bits.
#if defined(__x86_64__) || defined(_M_X64)
#include "core/quant/gptq_avx2.h"

namespace mlpkit::quant {
namespace {

#include "core/quant/gptq_loops.inl"

}  // namespace

void add_scaled_avx2(double* a, const double* b, double s, std::size_t n) { add_scaled_of(a, b, s, n); }
void sub_scaled_avx2(double* a, const double* b, double s, std::size_t n) { sub_scaled_of(a, b, s, n); }
void sub_panel_avx2(double* x, const double* packed, const double* coef, std::size_t count, std::size_t begin, std::size_t end) {
  apply_panel_of<true>(x, packed, coef, count, begin, end);
}
void add_panel_avx2(double* x, const double* packed, const double* coef, std::size_t count, std::size_t begin, std::size_t end) {
  apply_panel_of<false>(x, packed, coef, count, begin, end);
}

}  // namespace mlpkit::quant
#endif
