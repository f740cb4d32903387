// Portable kernels: one float per "vector". Compiled with the baseline flags, so this table runs
// on any CPU; it is also what MLPKIT_ISA=scalar forces, to test the generic code on its own.
#include <cmath>
#include <cstddef>
#include <utility>

#include "core/cpu/kernels.h"

namespace mlpkit::cpu {
namespace {

struct V {
  using T = float;
  static constexpr std::size_t W = 1;
  static constexpr int MR = 4;
  static constexpr int NV = 4;
  static void pin(T&) {}
  static void prefetch(const float*) {}
  static T zero() { return 0.0f; }
  static T set1(float x) { return x; }
  static T load(const float* p) { return *p; }
  static T load_part(const float* p, std::size_t) { return *p; }
  static T load_i8(const std::int8_t* p) { return static_cast<float>(*p); }
  static T load_i8_part(const std::int8_t* p, std::size_t) { return static_cast<float>(*p); }
  static void store(float* p, T x) { *p = x; }
  static void store_part(float* p, T x, std::size_t) { *p = x; }
  // Separate multiply and add (the build keeps contraction off): the portable rounding.
  static T fma(T a, T b, T c) { return a * b + c; }
  static T add(T a, T b) { return a + b; }
  static T sub(T a, T b) { return a - b; }
  static T mul(T a, T b) { return a * b; }
  static T div(T a, T b) { return a / b; }
  static T sqrt(T a) { return std::sqrt(a); }
  static T max(T a, T b) { return a > b ? a : b; }
  static T gt_select(T a, T b, T yes, T no) { return a > b ? yes : no; }
};

#include "core/cpu/kernels_impl.inl"

constexpr Kernels kTable = make_table("scalar");

}  // namespace

const Kernels& scalar_kernels() { return kTable; }

}  // namespace mlpkit::cpu
