// std::vector storage aligned to a cache line. A 64-byte vector load from an address that is
// not 64-byte aligned straddles two cache lines; for the packed weights that every predict
// streams, that roughly doubles the loads (and made batch-1 latency vary by ~40% from one
// model allocation to the next).
#pragma once

#include <cstddef>
#include <new>
#include <vector>

namespace mlpkit {

template <class T>
struct CacheAligned {
  using value_type = T;
  static constexpr std::size_t kAlign = 64;
  CacheAligned() = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) {}
  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_alloc();
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kAlign)));
  }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(kAlign)); }
  template <class U>
  bool operator==(const CacheAligned<U>&) const { return true; }
  template <class U>
  bool operator!=(const CacheAligned<U>&) const { return false; }
};

template <class T>
using AlignedVector = std::vector<T, CacheAligned<T>>;

}  // namespace mlpkit
