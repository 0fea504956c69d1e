// Replaces glibc's allocation entry points with counting wrappers around glibc's own
// implementation (__libc_*), so memory from either side stays freeable by free().
// Catches libmemcached's C allocations as well as operator new (which calls malloc).
#include "alloc_counter.hpp"

#include <errno.h>

#include <atomic>
#include <cstddef>

extern "C" {
void* __libc_malloc(std::size_t size);
void* __libc_calloc(std::size_t n, std::size_t size);
void* __libc_realloc(void* p, std::size_t size);
void* __libc_memalign(std::size_t alignment, std::size_t size);
}

namespace {
std::atomic<std::uint64_t> allocations{0};

inline void count() { allocations.fetch_add(1, std::memory_order_relaxed); }
}  // namespace

namespace cacheaside_bench {
std::uint64_t allocation_count() { return allocations.load(std::memory_order_relaxed); }
}  // namespace cacheaside_bench

extern "C" {

void* malloc(std::size_t size) {
  count();
  return __libc_malloc(size);
}

void* calloc(std::size_t n, std::size_t size) {
  count();
  return __libc_calloc(n, size);
}

void* realloc(void* p, std::size_t size) {
  // realloc(p, 0) frees; anything else may allocate.
  if (size != 0) count();
  return __libc_realloc(p, size);
}

void* memalign(std::size_t alignment, std::size_t size) {
  count();
  return __libc_memalign(alignment, size);
}

void* aligned_alloc(std::size_t alignment, std::size_t size) {
  count();
  return __libc_memalign(alignment, size);
}

int posix_memalign(void** out, std::size_t alignment, std::size_t size) {
  if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) return EINVAL;
  count();
  void* p = __libc_memalign(alignment, size);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}

}  // extern "C"
