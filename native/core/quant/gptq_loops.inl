// GPTQ's inner loops (gptq.cpp), included into an anonymous namespace twice: by gptq.cpp
// (baseline flags) and by gptq_avx2.cpp (-mavx2). Each is elementwise, one multiply and one
// add per element with no running sum, and neither build contracts them into an FMA
// (-ffp-contract=off), so any vector width gives the bits of lib/quant/hessian.ts and gptq.ts.

// a[i] += s * double(x[i]) (hessian.ts gramUpper: a float32 product is exact in float64).
inline void add_scaled_f32_of(double* a, const float* x, double s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) a[i] += s * static_cast<double>(x[i]);
}

// a[i] += s * b[i] (hessian.ts invertUpper).
inline void add_scaled_of(double* a, const double* b, double s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) a[i] += s * b[i];
}

// a[i] -= s * b[i] (hessian.ts reverseCholesky, gptq.ts propagate).
inline void sub_scaled_of(double* a, const double* b, double s, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) a[i] -= s * b[i];
}
