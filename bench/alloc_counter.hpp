// Counts heap allocations made by this process (malloc, calloc, realloc and the
// aligned forms; operator new goes through malloc), so each benchmark can report
// allocations per operation for the library and for raw libmemcached alike.
#pragma once

#include <cstdint>

namespace cacheaside_bench {

/// Number of heap allocations since the process started (all threads).
std::uint64_t allocation_count();

}  // namespace cacheaside_bench
