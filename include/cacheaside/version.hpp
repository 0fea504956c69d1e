// cacheaside: version of this library (CMake reads the project version from here).
#pragma once

#define CACHEASIDE_VERSION_MAJOR 0
#define CACHEASIDE_VERSION_MINOR 3
#define CACHEASIDE_VERSION_PATCH 0

/// The version as one number, MAJOR * 10000 + MINOR * 100 + PATCH, for `#if` checks.
#define CACHEASIDE_VERSION \
  (CACHEASIDE_VERSION_MAJOR * 10000 + CACHEASIDE_VERSION_MINOR * 100 + CACHEASIDE_VERSION_PATCH)
