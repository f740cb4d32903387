// gptq.cpp's inner loops built for AVX2 (gptq_avx2.cpp); callable only where the CPU has AVX2
// (gptq.cpp asks cpu::kernels() first).
#pragma once

#include <cstddef>

namespace mlpkit::quant {

#if defined(__x86_64__) || defined(_M_X64)
void add_scaled_avx2(double* a, const double* b, double s, std::size_t n);
void sub_scaled_avx2(double* a, const double* b, double s, std::size_t n);
void sub_panel_avx2(double* x, const double* packed, const double* coef, std::size_t count, std::size_t begin, std::size_t end);
void add_panel_avx2(double* x, const double* packed, const double* coef, std::size_t count, std::size_t begin, std::size_t end);
#endif

}  // namespace mlpkit::quant
