// Helpers shared by the two arm64 quantised kernel files. Include only inside a kernel file's
// anonymous namespace (as core/cpu/kernels_impl.inl): each file then gets its own internal copy,
// compiled with its own flags, and the linker can never merge the ARMv8.0 file's copy with the
// one built for sdot.

#include "core/quant/qkernels_passes.inl"

// 4 activation bytes repeated across the register: each output's 4 bytes meet the same inputs.
inline int8x16_t bcast4(const std::int8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return vreinterpretq_s8_s32(vdupq_n_s32(v));
}

// Four scales of the layout from index i, as floats: float32, or bfloat16 widened exactly
// (qlayer.h). A branch per group: the same way every time, so predicted.
inline float32x4_t load_scales4(const QuantLayer& l, std::size_t i) {
  if (l.bf16_scales) return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(l.scales16.data() + i), 16));
  return vld1q_f32(l.scales.data() + i);
}
