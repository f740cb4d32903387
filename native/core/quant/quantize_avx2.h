// quantize.cpp's scale search built for AVX2 (quantize_avx2.cpp); callable only where the CPU
// has AVX2 (quantize.cpp asks cpu::kernels() first).
#pragma once

#include <cstddef>

namespace mlpkit::quant {

#if defined(__x86_64__) || defined(_M_X64)
// quantize_search.inl group_errors_of: e[c] for the count candidates (s[c], z[c]) of row[0, len).
void group_errors_avx2(const float* row, std::size_t len, const double* s, const double* z, std::size_t count,
                       double qmin, double qmax, double* e);
#endif

}  // namespace mlpkit::quant
