// Row passes for the quantised kernel files of every ISA. Include only inside a kernel file's
// anonymous namespace (as qkernels_neon_passes.inl): each file then gets its own internal copy,
// compiled with its own flags, so the linker never merges copies built for different ISAs.

// f(first, std::integral_constant<R>) over rows [0, count) in passes of at most Max rows, so each
// pass is a kernel instantiated for its row count, with its accumulators in registers.
template <std::size_t R, class F>
void last_pass(std::size_t first, std::size_t left, F& f) {
  if constexpr (R > 0) {
    if (left == R) {
      f(first, std::integral_constant<std::size_t, R>{});
    } else {
      last_pass<R - 1>(first, left, f);
    }
  }
}

template <std::size_t Max, class F>
void in_passes(std::size_t count, F f) {
  std::size_t r = 0;
  for (; r + Max <= count; r += Max) f(r, std::integral_constant<std::size_t, Max>{});
  last_pass<Max - 1>(r, count - r, f);
}
