# cmake -DBUILD_DIR=... -DCONFIG=... -DWORK_DIR=... -DSOURCE_DIR=... -DGENERATOR=...
#       -DCXX_COMPILER=... -DINCLUDEDIR=... -DDOCDIR=... -DCMAKEDIR=... -P check_install.cmake
# Installs the build tree to WORK_DIR/prefix, builds and runs the consumer project
# against that prefix only, then checks the cases find_package must refuse.
cmake_minimum_required(VERSION 3.23)

set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")
set(config_args "")
if(CONFIG)
  set(config_args --config "${CONFIG}")
endif()
# Only the fresh prefix may satisfy find_package: no package registry, no build tree.
set(common_args -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
  "-DCMAKE_PREFIX_PATH=${prefix}" -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF)

function(step name)
  message(STATUS "find_package test: ${name}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out
    TIMEOUT 300)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${name} failed (${rc}):\n${out}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

# A configure that must fail, with output matching `expect`.
function(refused mode expect)
  set(env_args "")
  if(mode STREQUAL "old_libmemcached")
    file(WRITE "${WORK_DIR}/oldpc/libmemcached.pc"
      "Name: libmemcached\nDescription: too old\nVersion: 1.0.18\nLibs: -lmemcached\nCflags:\n")
    set(env_args "PKG_CONFIG_PATH=${WORK_DIR}/oldpc")
  endif()
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env ${env_args}
      ${CMAKE_COMMAND} -S "${SOURCE_DIR}/components" -B "${WORK_DIR}/${mode}" ${common_args}
      "-DMODE=${mode}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out TIMEOUT 300)
  if(rc EQUAL 0 OR NOT out MATCHES "${expect}")
    message(FATAL_ERROR "find_package case '${mode}' should fail with '${expect}' (rc ${rc}):\n${out}")
  endif()
  message(STATUS "find_package test: ${mode} refused as expected")
endfunction()

step("install" ${CMAKE_COMMAND} --install "${BUILD_DIR}" --prefix "${prefix}" ${config_args})
foreach(f "${INCLUDEDIR}/cacheaside/cacheaside.hpp" "${INCLUDEDIR}/cacheaside/detail"
          "${DOCDIR}/LICENSE" "${CMAKEDIR}/Findlibmemcached.cmake" "${CMAKEDIR}/cacheasideConfig.cmake")
  if(NOT EXISTS "${prefix}/${f}")
    message(FATAL_ERROR "not installed: ${prefix}/${f}")
  endif()
endforeach()

set(consumer "${WORK_DIR}/consumer")
step("configure consumer" ${CMAKE_COMMAND} -S "${SOURCE_DIR}/consumer" -B "${consumer}" ${common_args})
file(STRINGS "${consumer}/CMakeCache.txt" dir_line REGEX "^cacheaside_DIR:")
if(NOT dir_line MATCHES "=${prefix}/")
  message(FATAL_ERROR "consumer did not use the installed package: ${dir_line}")
endif()
step("build consumer" ${CMAKE_COMMAND} --build "${consumer}" --config Release)

find_program(quickstart quickstart PATHS "${consumer}" "${consumer}/Release" NO_DEFAULT_PATH
  REQUIRED)
step("run consumer without arguments" "${quickstart}")
if(NOT out MATCHES "usage:")
  message(FATAL_ERROR "unexpected output:\n${out}")
endif()
# Nothing listens on port 1: every get must still answer, from the loader.
step("run consumer with no server" "${quickstart}" "--SERVER=127.0.0.1:1")
if(NOT out MATCHES "user_1: Ada" OR NOT out MATCHES "users_all: 2 users")
  message(FATAL_ERROR "unexpected output:\n${out}")
endif()

find_program(meta_consumer meta_consumer PATHS "${consumer}" "${consumer}/Release"
  NO_DEFAULT_PATH REQUIRED)
step("run the meta consumer with no server" "${meta_consumer}")
find_program(async_consumer async_consumer PATHS "${consumer}" "${consumer}/Release"
  NO_DEFAULT_PATH REQUIRED)
step("run the async consumer with no server" "${async_consumer}")

refused(unknown_required "nosuch")
refused(wrong_major "compatible with requested version")
refused(old_libmemcached "unsuitable version \"1.0.18\"")
step("optional components" ${CMAKE_COMMAND} -S "${SOURCE_DIR}/components" -B "${WORK_DIR}/optional"
  ${common_args} -DMODE=optional)
if(NOT out MATCHES "optional components: ok")
  message(FATAL_ERROR "unexpected output:\n${out}")
endif()
message(STATUS "find_package test: all passed")
