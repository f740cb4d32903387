// std::vector storage aligned to a cache line. A 64-byte vector load from an address that is
// not 64-byte aligned straddles two cache lines; for the packed weights that every predict
// streams, that roughly doubles the loads (and made batch-1 latency vary by ~40% from one
// model allocation to the next).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mlpkit {

constexpr std::size_t kHugePage = std::size_t(2) << 20;

// Offers the whole 2 MB pages inside [p, p + bytes) to transparent huge pages, on Linux (a hint:
// failure is harmless, and it changes no contents). Where THP is in its default 'madvise' mode,
// a buffer written for the first time then takes one page fault per 2 MB instead of one per
// 4 KB: on a 2-core cloud VM a first write of 268 MB took ~0.7 s in 4 KB faults (~10 us each).
inline void offer_huge_pages(void* p, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const std::uintptr_t begin = (reinterpret_cast<std::uintptr_t>(p) + kHugePage - 1) & ~(kHugePage - 1);
  const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(p) + bytes) & ~(kHugePage - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

template <class T>
struct CacheAligned {
  using value_type = T;
  static constexpr std::size_t kAlign = 64;
  CacheAligned() = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) {}
  // Buffers of a huge page or more (weights) are aligned to one and, on Linux, offered to
  // transparent huge pages: a 268 MB layer read in 4 KB pages misses the TLB on every page,
  // which costs the strided and gathered reads (sparse rows, row-major B) up to a third.
  static std::size_t align_for(std::size_t bytes) { return bytes >= kHugePage ? kHugePage : kAlign; }
  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_alloc();
    const std::size_t bytes = n * sizeof(T);
    void* p = ::operator new(bytes, std::align_val_t(align_for(bytes)));
    if (bytes >= kHugePage) offer_huge_pages(p, bytes);
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) { ::operator delete(p, std::align_val_t(align_for(n * sizeof(T)))); }
  template <class U>
  bool operator==(const CacheAligned<U>&) const { return true; }
  template <class U>
  bool operator!=(const CacheAligned<U>&) const { return false; }
};

template <class T>
using AlignedVector = std::vector<T, CacheAligned<T>>;

// The same storage, except that resize() leaves new elements default-initialised (floats:
// unwritten), for buffers written whole right after. A zero fill of a model's 268 MB weights
// first was a single-threaded pass that took every page fault on one core; written by the
// threads that fill them, the faults are shared.
template <class T>
struct CacheAlignedUninit : CacheAligned<T> {
  using value_type = T;
  template <class U>
  struct rebind {
    using other = CacheAlignedUninit<U>;
  };
  CacheAlignedUninit() = default;
  template <class U>
  CacheAlignedUninit(const CacheAlignedUninit<U>&) {}
  T* allocate(std::size_t n) {
    T* p = CacheAligned<T>::allocate(n);
#if defined(MLPKIT_POISON_UNINIT)
    // Sanitized builds (scripts/sanitize.sh): all bits set, NaN as a float, so a read of an
    // element nothing wrote turns up in the results the tests compare.
    std::memset(static_cast<void*>(p), 0xff, n * sizeof(T));
#endif
    return p;
  }
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... A>
  void construct(U* p, A&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(args)...);
  }
};

template <class T>
using UninitVector = std::vector<T, CacheAlignedUninit<T>>;

}  // namespace mlpkit
