# Libraries carried to a machine that does not have them: the GPU machine
# (Ubuntu, nvcc, its own torch; no network, none of our Debian packages).
# scripts/gpu-pack unpacks Debian 12's packages under .gpu/deps and
# scripts/gpu-check configures with
#   -DLINEARIZE_DEPS_PREFIX=<repo>/.gpu/deps -DLINEARIZE_WITH_SERVICES=OFF
# Then Abseil, nlohmann-json, CLI11, Google Benchmark, PCRE2, SentencePiece,
# OpenSSL and libgd come from that prefix and from nowhere else (the system's
# copies are never searched for them), and every binary carries an RPATH to
# the prefix's libraries, so it runs without LD_LIBRARY_PATH.
# Empty (the default): the system's libraries, as scripts/setup installs them.
set(LINEARIZE_DEPS_PREFIX "" CACHE PATH
    "Root of Debian packages unpacked by scripts/gpu-pack (.gpu/deps); empty: system libraries")
if(NOT LINEARIZE_DEPS_PREFIX)
  return()
endif()

get_filename_component(_ld_root "${LINEARIZE_DEPS_PREFIX}" ABSOLUTE)
set(_ld_usr ${_ld_root}/usr)
set(_ld_lib ${_ld_usr}/lib/x86_64-linux-gnu)
if(NOT EXISTS ${_ld_lib}/cmake/absl/abslConfig.cmake OR NOT EXISTS ${_ld_root}/pkg-config)
  message(FATAL_ERROR "LINEARIZE_DEPS_PREFIX=${_ld_root} holds no carried packages: "
                      "run scripts/gpu-pack")
endif()
message(STATUS "linearize: carried libraries from ${_ld_root}")

# CMake packages: exactly these copies.
set(absl_DIR ${_ld_lib}/cmake/absl CACHE PATH "" FORCE)
set(nlohmann_json_DIR ${_ld_usr}/share/cmake/nlohmann_json CACHE PATH "" FORCE)
set(CLI11_DIR ${_ld_usr}/share/cmake/CLI11 CACHE PATH "" FORCE)
set(benchmark_DIR ${_ld_lib}/cmake/benchmark CACHE PATH "" FORCE)

# pkg-config (PCRE2, SentencePiece): the carried pkgconf through a wrapper
# that lets it read only the carried .pc files (whose paths are relative to
# the .pc file); the GPU machine may have no pkg-config at all.
set(PKG_CONFIG_EXECUTABLE ${_ld_root}/pkg-config CACHE FILEPATH "" FORCE)

# OpenSSL (libcrypto for SHA-256): found here so that common/io's
# find_package(OpenSSL) reuses these targets. opensslconf.h includes the
# multiarch <openssl/configuration.h>.
set(OPENSSL_INCLUDE_DIR ${_ld_usr}/include CACHE PATH "" FORCE)
set(OPENSSL_CRYPTO_LIBRARY ${_ld_lib}/libcrypto.so CACHE FILEPATH "" FORCE)
set(OPENSSL_SSL_LIBRARY ${_ld_lib}/libssl.so CACHE FILEPATH "" FORCE)
find_package(OpenSSL REQUIRED)
foreach(_ld_t OpenSSL::Crypto OpenSSL::SSL)
  set_property(TARGET ${_ld_t} APPEND PROPERTY
               INTERFACE_INCLUDE_DIRECTORIES ${_ld_usr}/include/x86_64-linux-gnu)
endforeach()

# libgd (common/eval's PNG plots), linked statically: libgd.so pulls a dozen
# image codecs (AVIF, HEIF, TIFF, ...); the static library's drawing and PNG
# parts need only libpng and zlib. common/eval links LINEARIZE_GD_LIBRARY.
add_library(linearize_carried_gd INTERFACE)
target_link_libraries(linearize_carried_gd INTERFACE
  ${_ld_lib}/libgd.a ${_ld_lib}/libpng16.a ${_ld_lib}/libz.a m)
set(LINEARIZE_GD_LIBRARY linearize_carried_gd CACHE STRING "" FORCE)
set(LINEARIZE_GD_INCLUDE ${_ld_usr}/include CACHE PATH "" FORCE)

# Run time: an RPATH (not RUNPATH) to the carried libraries, which is also
# searched for their own dependencies (Abseil's libraries need each other).
add_link_options(LINKER:--disable-new-dtags LINKER:-rpath,${_ld_lib} LINKER:-rpath-link,${_ld_lib})

# GoogleTest: the carried sources, even where an installed copy exists.
if(LINEARIZE_GTEST_SOURCE_DIR)
  set(CMAKE_DISABLE_FIND_PACKAGE_GTest ON)
endif()
