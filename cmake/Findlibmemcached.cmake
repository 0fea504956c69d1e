# Findlibmemcached
# ----------------
# Finds libmemcached and libmemcachedutil (its connection pool) through pkg-config,
# with a plain header/library search as fallback.
#
# Versions older than CACHEASIDE_LIBMEMCACHED_MIN (set by cacheaside's CMakeLists.txt and
# package config) are refused whatever version the caller asks for: earlier releases can
# hand a reply to the wrong request after a timeout.
#
# Imported target: libmemcached::libmemcached (libmemcachedutil + libmemcached).
# Variables: libmemcached_FOUND, libmemcached_VERSION, libmemcached_INCLUDE_DIRS,
# libmemcached_LIBRARIES.

if(NOT CACHEASIDE_LIBMEMCACHED_MIN)
  message(FATAL_ERROR "Findlibmemcached: CACHEASIDE_LIBMEMCACHED_MIN is not set")
endif()
set(_libmemcached_min_version ${CACHEASIDE_LIBMEMCACHED_MIN})

find_package(PkgConfig QUIET)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(PC_libmemcached QUIET libmemcached)
endif()

find_path(libmemcached_INCLUDE_DIR libmemcached-1.0/memcached.h
  HINTS ${PC_libmemcached_INCLUDE_DIRS})
find_path(libmemcachedutil_INCLUDE_DIR libmemcachedutil-1.0/pool.h
  HINTS ${PC_libmemcached_INCLUDE_DIRS})
find_library(libmemcached_LIBRARY NAMES memcached HINTS ${PC_libmemcached_LIBRARY_DIRS})
find_library(libmemcachedutil_LIBRARY NAMES memcachedutil HINTS ${PC_libmemcached_LIBRARY_DIRS})
mark_as_advanced(libmemcached_INCLUDE_DIR libmemcachedutil_INCLUDE_DIR
  libmemcached_LIBRARY libmemcachedutil_LIBRARY)

if(PC_libmemcached_VERSION)
  set(libmemcached_VERSION "${PC_libmemcached_VERSION}")
elseif(libmemcached_INCLUDE_DIR AND EXISTS "${libmemcached_INCLUDE_DIR}/libmemcached-1.0/configure.h")
  file(STRINGS "${libmemcached_INCLUDE_DIR}/libmemcached-1.0/configure.h" _libmemcached_version_line
    REGEX "^#define LIBMEMCACHED_VERSION_STRING \"[0-9.]+\"")
  string(REGEX MATCH "[0-9][0-9.]*" libmemcached_VERSION "${_libmemcached_version_line}")
endif()

# Raise the requested version to the floor, so the standard message reads
# 'Found unsuitable version "1.0.18", but required is at least "1.1.4"'.
if(NOT libmemcached_FIND_VERSION_RANGE AND
   (NOT DEFINED libmemcached_FIND_VERSION OR
    libmemcached_FIND_VERSION VERSION_LESS _libmemcached_min_version))
  set(libmemcached_FIND_VERSION ${_libmemcached_min_version})
  set(libmemcached_FIND_VERSION_EXACT FALSE)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(libmemcached
  REQUIRED_VARS libmemcached_LIBRARY libmemcachedutil_LIBRARY
                libmemcached_INCLUDE_DIR libmemcachedutil_INCLUDE_DIR
  VERSION_VAR libmemcached_VERSION
  REASON_FAILURE_MESSAGE
    "cacheaside needs libmemcached >= ${_libmemcached_min_version} with libmemcachedutil \
(Debian: libmemcached-dev), as older releases can mix up replies after a timeout.")

if(libmemcached_FOUND)
  set(libmemcached_INCLUDE_DIRS ${libmemcached_INCLUDE_DIR} ${libmemcachedutil_INCLUDE_DIR})
  list(REMOVE_DUPLICATES libmemcached_INCLUDE_DIRS)
  set(libmemcached_LIBRARIES ${libmemcachedutil_LIBRARY} ${libmemcached_LIBRARY})
  if(NOT TARGET libmemcached::libmemcached)
    add_library(libmemcached::memcached UNKNOWN IMPORTED)
    set_target_properties(libmemcached::memcached PROPERTIES
      IMPORTED_LOCATION "${libmemcached_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${libmemcached_INCLUDE_DIR}")
    add_library(libmemcached::memcachedutil UNKNOWN IMPORTED)
    set_target_properties(libmemcached::memcachedutil PROPERTIES
      IMPORTED_LOCATION "${libmemcachedutil_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${libmemcachedutil_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES libmemcached::memcached)
    add_library(libmemcached::libmemcached INTERFACE IMPORTED)
    set_target_properties(libmemcached::libmemcached PROPERTIES
      INTERFACE_LINK_LIBRARIES libmemcached::memcachedutil)
  endif()
endif()
