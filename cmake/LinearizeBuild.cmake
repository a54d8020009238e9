# Build helpers shared by every folder: ccache, LibTorch discovery, the
# precompiled LibTorch header and a one-line way to declare a gtest.

find_program(CCACHE_PROGRAM ccache)
if(CCACHE_PROGRAM)
  # pch_defines/time_macros let ccache reuse objects built with the PCH.
  set(_ccache_launcher ${CMAKE_COMMAND} -E env
      "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
      ${CCACHE_PROGRAM})
  set(CMAKE_C_COMPILER_LAUNCHER ${_ccache_launcher})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${_ccache_launcher})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${_ccache_launcher})
endif()

set(LINEARIZE_WARNINGS -Wall -Wextra -Wno-unused-parameter)

# LibTorch comes from the torch wheel in the project venv (scripts/setup), or
# from CMAKE_PREFIX_PATH / Torch_DIR when the caller already points at one
# (the GPU machine's own torch).
macro(linearize_find_torch)
  if(NOT Torch_DIR)
    find_program(LINEARIZE_PYTHON NAMES python3
                 HINTS ${CMAKE_SOURCE_DIR}/.venv/bin NO_DEFAULT_PATH)
    if(NOT LINEARIZE_PYTHON)
      find_program(LINEARIZE_PYTHON NAMES python3)
    endif()
    execute_process(
      COMMAND ${LINEARIZE_PYTHON} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
      OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE
      ERROR_QUIET RESULT_VARIABLE _torch_rc)
    if(_torch_rc EQUAL 0)
      list(APPEND CMAKE_PREFIX_PATH ${_torch_prefix})
    endif()
  endif()
  # The CUDA wheel's config looks for a CUDA toolkit; keep its output quiet.
  set(CAFFE2_USE_CUDNN OFF)
  find_package(Torch REQUIRED QUIET)
  # Link only what the engine needs; TORCH_LIBRARIES also drags in CUDA libs.
  add_library(linearize_torch INTERFACE)
  target_link_libraries(linearize_torch INTERFACE ${TORCH_LIBRARIES})
  target_include_directories(linearize_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
  # One precompiled header for every target that includes ATen.
  add_library(linearize_torch_pch STATIC ${CMAKE_SOURCE_DIR}/cmake/pch_anchor.cc)
  target_link_libraries(linearize_torch_pch PUBLIC linearize_torch)
  target_precompile_headers(linearize_torch_pch PRIVATE <ATen/ATen.h> <vector> <string>)
endmacro()

# Reuse the LibTorch PCH in a target that includes ATen.
function(linearize_use_torch_pch target)
  target_link_libraries(${target} PUBLIC linearize_torch)
  target_precompile_headers(${target} REUSE_FROM linearize_torch_pch)
endfunction()

# linearize_add_gtest(NAME SOURCES a.cc b.cc LIBS x y [TORCH] [LABELS l])
function(linearize_add_gtest name)
  cmake_parse_arguments(T "TORCH" "" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gmock GTest::gtest_main)
  target_compile_options(${name} PRIVATE ${LINEARIZE_WARNINGS})
  target_compile_definitions(${name} PRIVATE
      LINEARIZE_SOURCE_DIR="${CMAKE_SOURCE_DIR}"
      LINEARIZE_FIXTURES_DIR="${CMAKE_SOURCE_DIR}/tests/fixtures")
  if(T_TORCH)
    linearize_use_torch_pch(${name})
  endif()
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  # ctest runs tests side by side; one intra-op thread each avoids
  # oversubscribing the cores.
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST
      PROPERTIES LABELS "${T_LABELS}" TIMEOUT 600 ENVIRONMENT "OMP_NUM_THREADS=1")
endfunction()
