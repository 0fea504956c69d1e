# pkg-config files and the Debian package (cpack -G DEB). Included by the top-level
# CMakeLists.txt when CACHEASIDE_INSTALL is on; expects the component list in
# CACHEASIDE_COMPONENTS and the minimum dependency versions.

# ---- pkg-config ----------------------------------------------------------------------
# Header-only, so architecture-independent: share/pkgconfig, which pkg-config searches by
# default. Every path is relative to the .pc file (${pcfiledir}), so an install prefix can
# be moved, or unpacked anywhere with `dpkg -x`.
set(CACHEASIDE_INSTALL_PKGCONFIGDIR "${CMAKE_INSTALL_DATADIR}/pkgconfig"
  CACHE STRING "Where to install the pkg-config files, relative to the prefix")

function(_cacheaside_pc_prefix out)
  if(IS_ABSOLUTE "${CACHEASIDE_INSTALL_PKGCONFIGDIR}")
    set(${out} "${CMAKE_INSTALL_PREFIX}" PARENT_SCOPE)
    return()
  endif()
  file(RELATIVE_PATH rel "/_p/${CACHEASIDE_INSTALL_PKGCONFIGDIR}" "/_p")
  string(REGEX REPLACE "/$" "" rel "${rel}")
  set(${out} "\${pcfiledir}/${rel}" PARENT_SCOPE)
endfunction()

# cacheaside_pkgconfig(<name> <description> REQUIRES <module>... LIBS <flag>...)
function(cacheaside_pkgconfig name description)
  cmake_parse_arguments(PC "" "" "REQUIRES;LIBS" ${ARGN})
  _cacheaside_pc_prefix(prefix)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_INCLUDEDIR}")
    set(includedir "${CMAKE_INSTALL_INCLUDEDIR}")
  else()
    set(includedir "\${prefix}/${CMAKE_INSTALL_INCLUDEDIR}")
  endif()
  list(JOIN PC_REQUIRES ", " requires)
  list(JOIN PC_LIBS " " libs)
  set(file "${PROJECT_BINARY_DIR}/pkgconfig/${name}.pc")
  file(CONFIGURE OUTPUT "${file}" @ONLY CONTENT [=[
prefix=@prefix@
includedir=@includedir@

Name: @name@
Description: @description@
Version: @PROJECT_VERSION@
Requires: @requires@
Cflags: -I${includedir}
Libs: @libs@
]=])
  install(FILES "${file}" DESTINATION "${CACHEASIDE_INSTALL_PKGCONFIGDIR}" COMPONENT dev)
endfunction()

cacheaside_pkgconfig(cacheaside
  "Cache-aside over memcached, header-only C++17 (core: standard library and POSIX only)"
  LIBS -pthread)
set(_pc_core "cacheaside = ${PROJECT_VERSION}")
if("memcached" IN_LIST CACHEASIDE_COMPONENTS)
  cacheaside_pkgconfig(cacheaside-memcached "cacheaside: MemcachedStore over libmemcached"
    REQUIRES "${_pc_core}" "libmemcached >= ${CACHEASIDE_LIBMEMCACHED_MIN}")
endif()
if("meta" IN_LIST CACHEASIDE_COMPONENTS)
  cacheaside_pkgconfig(cacheaside-meta
    "cacheaside: MetaStore, memcached's meta protocol (libmemcached for ketama hashing)"
    REQUIRES "${_pc_core}" "libmemcached >= ${CACHEASIDE_LIBMEMCACHED_MIN}")
endif()
if("async" IN_LIST CACHEASIDE_COMPONENTS)
  # Boost ships no .pc file: its headers are in the default include path on Debian.
  cacheaside_pkgconfig(cacheaside-async
    "cacheaside: AsyncMetaStore, the meta protocol over Boost.Asio (Boost >= ${CACHEASIDE_BOOST_MIN})"
    REQUIRES "cacheaside-meta = ${PROJECT_VERSION}")
endif()
if("tls" IN_LIST CACHEASIDE_COMPONENTS)
  cacheaside_pkgconfig(cacheaside-tls
    "cacheaside: TLS for MetaStore and AsyncMetaStore (OpenSSL >= ${CACHEASIDE_OPENSSL_MIN})"
    REQUIRES "cacheaside-meta = ${PROJECT_VERSION}" "libssl >= ${CACHEASIDE_OPENSSL_MIN}"
      "libcrypto >= ${CACHEASIDE_OPENSSL_MIN}")  # tls.hpp calls libcrypto too (ERR_*, X509_*)
endif()
if("postgres" IN_LIST CACHEASIDE_COMPONENTS)
  cacheaside_pkgconfig(cacheaside-postgres
    "cacheaside: PostgreSQL outbox hooks and relay (libpq >= ${CACHEASIDE_LIBPQ_MIN})"
    REQUIRES "cacheaside-async = ${PROJECT_VERSION}" "libpq >= ${CACHEASIDE_LIBPQ_MIN}")
endif()
if("json" IN_LIST CACHEASIDE_COMPONENTS)
  cacheaside_pkgconfig(cacheaside-json "cacheaside: JSON and CBOR serializers (nlohmann_json)"
    REQUIRES "${_pc_core}" "nlohmann_json >= ${CACHEASIDE_NLOHMANN_JSON_MIN}")
endif()

# ---- documentation -----------------------------------------------------------------
install(FILES README.md CHANGELOG.md DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/cacheaside"
  COMPONENT dev)
install(DIRECTORY docs/ DESTINATION "${CMAKE_INSTALL_DATADIR}/doc/cacheaside/docs" COMPONENT dev
  PATTERN "Doxyfile" EXCLUDE)

# ---- Debian packages: cpack -G DEB ---------------------------------------------------
# cacheaside-dev_<version>_all.deb: headers, CMake package, .pc files, LICENSE, docs.
# Its Depends lists the Debian packages of the components this build provides, at the
# versions find_package and pkg-config will ask for.
# cacheaside-user-service_<version>_<arch>.deb (when the examples are built): the example
# service and its systemd unit; Depends from its shared libraries (dpkg-shlibdeps).
set(_deb_depends "")
if("memcached" IN_LIST CACHEASIDE_COMPONENTS OR "meta" IN_LIST CACHEASIDE_COMPONENTS)
  list(APPEND _deb_depends "libmemcached-dev (>= ${CACHEASIDE_LIBMEMCACHED_MIN})")
endif()
if("async" IN_LIST CACHEASIDE_COMPONENTS)
  list(APPEND _deb_depends "libboost${CACHEASIDE_BOOST_MIN}-dev | libboost-dev (>= ${CACHEASIDE_BOOST_MIN})")
endif()
if("tls" IN_LIST CACHEASIDE_COMPONENTS)
  list(APPEND _deb_depends "libssl-dev (>= ${CACHEASIDE_OPENSSL_MIN})")
endif()
if("postgres" IN_LIST CACHEASIDE_COMPONENTS)
  list(APPEND _deb_depends "libpq-dev (>= ${CACHEASIDE_LIBPQ_MIN})")
endif()
if("json" IN_LIST CACHEASIDE_COMPONENTS)
  list(APPEND _deb_depends "nlohmann-json3-dev (>= ${CACHEASIDE_NLOHMANN_JSON_MIN})")
endif()
# Findlibmemcached.cmake asks pkg-config first.
list(APPEND _deb_depends "pkgconf | pkg-config")
list(JOIN _deb_depends ", " CPACK_DEBIAN_DEV_PACKAGE_DEPENDS)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME cacheaside)
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "cacheaside contributors <cacheaside@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_RESOURCE_FILE_LICENSE "${PROJECT_SOURCE_DIR}/LICENSE")
# CPackDeb prepends the package summary to each description unless it is CPack's
# default; each package's description carries its own summary line instead.
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "${PROJECT_NAME} built using CMake")
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # <package>_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME cacheaside-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_ARCHITECTURE all)
set(CPACK_DEBIAN_DEV_PACKAGE_SUGGESTS memcached)
# Each package's summary is its description's first line; CPack indents
# the rest and turns the empty line into " .".
set(CPACK_COMPONENT_DEV_DESCRIPTION
  "${PROJECT_DESCRIPTION}
CacheAside<Key, Value, Serializer> reads memcached, calls a loader on a miss,
stores the result with a TTL and deletes on write, without stampedes (single-flight
and leases), without stale write-backs, and degrading to the loader when memcached
fails. Stores: libmemcached (classic protocol), memcached's meta protocol, in-memory.

Ships the headers, the CMake package (find_package(cacheaside)) and pkg-config
files (cacheaside, cacheaside-memcached, cacheaside-meta, cacheaside-json).")

if(TARGET user_service)
  list(APPEND CPACK_COMPONENTS_ALL service)
  set(CPACK_DEBIAN_SERVICE_PACKAGE_NAME cacheaside-user-service)
  set(CPACK_DEBIAN_SERVICE_PACKAGE_SECTION web)
  set(CPACK_DEBIAN_SERVICE_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_SERVICE_PACKAGE_RECOMMENDS memcached)
  set(CPACK_COMPONENT_SERVICE_DESCRIPTION
    "cacheaside example user service (HTTP + SQLite, cached in memcached)
The example service of cacheaside: users over HTTP from SQLite, cached with
users_all (60 s) and user_<id> (120 s) in memcached, invalidated on every write.
A systemd unit (cacheaside-user-service.service) runs it on 127.0.0.1:8000 in
front of the local memcached.")
endif()
include(CPack)
