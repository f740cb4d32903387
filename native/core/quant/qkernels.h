// The quantised kernels, per ISA: one block of 16 outputs (see qlayer.h) against `rows` input
// rows, y[r * ldy + o] for o < 16 (the caller copies the valid outputs out).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/quant/qlayer.h"

namespace mlpkit::quant {

// One input row quantised for W8A8 (lib/quant/format.ts): xq padded with zeros to kq.
struct QuantRow {
  const std::int8_t* xq;     // [kq]
  const std::uint8_t* xu;    // [kq]: xq + 128, the unsigned operand of the int8 x int8 product
  const std::int32_t* xsum;  // [groups]: sum of xq over each group
  float sx;
};

struct QuantKernels {
  const char* isa;
  // W8A8: y[o] for the outputs of block b, before bias and activation, exactly as format.ts.
  void (*w8a8_block)(const QuantLayer& l, std::size_t b, const QuantRow* rows, std::size_t count, float* y,
                     std::size_t ldy);
  // Weight-only: y[o] = sum_p x_p * dequant(w)_op for block b, before bias and activation.
  void (*wfloat_block)(const QuantLayer& l, std::size_t b, const float* const* x, std::size_t count, float* y,
                       std::size_t ldy);
  // Optional (null where an ISA has none): W8A8 of blocks b and b + 1 at once, int8 or int4,
  // y[r * ldy + o] for o < 32, the same bits as two w8a8_block calls. Where the products are
  // compute-bound (batched), one broadcast of an input word then feeds two blocks' weights.
  // Meanwhile it prefetches `prefetch_lines` 64-byte lines from `prefetch` into L2 (the caller's
  // next blocks: see qmodel.cpp), spread over its steps; prefetch_lines may be 0.
  void (*w8a8_pair)(const QuantLayer& l, std::size_t b, const QuantRow* rows, std::size_t count, float* y,
                    std::size_t ldy, const std::uint8_t* prefetch, std::size_t prefetch_lines);
  // W8A8's input quantisation of one row (qkernels_quantize_row.inl): the same bits on every ISA.
  float (*quantize_row)(const QuantLayer& l, const float* x, std::int8_t* q, std::uint8_t* u, std::int32_t* s);
  // Optional (null where an ISA has none): weight-only int8 of blocks b and b + 1 at once,
  // y[r * ldy + o] for o < 32, the same bits as two wfloat_block calls; prefetching as w8a8_pair
  // (but for a call of 4 rows, run one block at a time without it).
  void (*wfloat_pair)(const QuantLayer& l, std::size_t b, const float* const* x, std::size_t count, float* y,
                      std::size_t ldy, const std::uint8_t* prefetch, std::size_t prefetch_lines);
};

const QuantKernels& quant_scalar_kernels();
#if defined(__x86_64__) || defined(_M_X64)
const QuantKernels& quant_vnni_kernels();  // AVX-512 F/BW/VL + VNNI
const QuantKernels& quant_avx2_kernels();  // AVX2 + FMA
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
const QuantKernels& quant_neon_kernels();          // ARMv8.0 Advanced SIMD: every arm64 core
// + sdot (the dotprod extension): null when the file was built without it. Compiled for dotprod,
// getter included: call it only once cpu_has_dotprod() said yes.
const QuantKernels* quant_neon_dotprod_kernels();
bool cpu_has_dotprod();  // the CPU (and OS) report dotprod
#endif
const QuantKernels& quant_kernels();

}  // namespace mlpkit::quant
