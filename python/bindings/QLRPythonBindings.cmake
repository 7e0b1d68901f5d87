# Included by the top-level CMakeLists.txt when QLR_ENABLE_PYTHON_BINDINGS is
# ON: finds Python 3 (interpreter and Development.Module) and nanobind, and
# adds python/bindings when both are there; otherwise says what is missing
# and builds without the extension (the pure-Python runtime package works
# without it).

# Prefer the project's virtual environment (scripts/setup.sh creates .venv):
# its interpreter has nanobind, and the extension must match its version.
if(NOT DEFINED Python_EXECUTABLE AND NOT DEFINED ENV{VIRTUAL_ENV}
   AND EXISTS "${PROJECT_SOURCE_DIR}/.venv/bin/python")
  set(Python_EXECUTABLE "${PROJECT_SOURCE_DIR}/.venv/bin/python")
endif()
find_package(Python 3.9 COMPONENTS Interpreter Development.Module)

set(_qlr_python_missing "")
if(NOT Python_FOUND)
  set(_qlr_python_missing "Python 3 with its development headers (Debian: python3-dev)")
else()
  if(NOT nanobind_DIR)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -m nanobind --cmake_dir
      OUTPUT_VARIABLE _qlr_nanobind_dir OUTPUT_STRIP_TRAILING_WHITESPACE
      RESULT_VARIABLE _qlr_nanobind_rc ERROR_QUIET)
    if(_qlr_nanobind_rc EQUAL 0)
      set(nanobind_DIR "${_qlr_nanobind_dir}" CACHE PATH "nanobind's CMake directory")
    endif()
  endif()
  find_package(nanobind CONFIG QUIET)
  if(NOT nanobind_FOUND)
    set(_qlr_python_missing
        "nanobind for ${Python_EXECUTABLE} (pip install nanobind, or -Dnanobind_DIR=...)")
  endif()
endif()

if(_qlr_python_missing)
  message(WARNING
    "QLR Python bindings (qlr.compiler) are not built: no ${_qlr_python_missing}. "
    "Install it and reconfigure, or pass -DQLR_ENABLE_PYTHON_BINDINGS=OFF to "
    "silence this message. The pure-Python runtime package (import qlr) works "
    "without them.")
  set(QLR_PYTHON_BINDINGS_BUILT OFF)
else()
  message(STATUS "QLR Python bindings: ${Python_EXECUTABLE} "
                 "(Python ${Python_VERSION}), nanobind in ${nanobind_DIR}")
  add_subdirectory(${CMAKE_CURRENT_LIST_DIR} ${CMAKE_BINARY_DIR}/python/bindings)
  set(QLR_PYTHON_BINDINGS_BUILT ON)
endif()
