# Thin wrappers used by every QLR CMakeLists.txt.
#
# All QLR libraries are static archives compiled as position-independent code
# and linked against the *shared* libMLIR.so / libLLVM.so. Mixing the static
# libMLIR*.a archives with libMLIR.so in one binary would give two copies of
# MLIR's registries, so we never use the static archives.

set_property(GLOBAL PROPERTY QLR_EXPORTED_LIBS "")

# add_qlr_library(<name> <sources...> [DEPENDS <targets...>]
#                 [LINK_LIBS <libs...>] [MLIR])
#   MLIR: the library uses MLIR (links libMLIR.so), otherwise only libLLVM.so.
function(add_qlr_library name)
  cmake_parse_arguments(ARG "MLIR" "" "DEPENDS;LINK_LIBS" ${ARGN})
  add_library(${name} STATIC ${ARG_UNPARSED_ARGUMENTS})
  add_library(QLR::${name} ALIAS ${name})
  target_include_directories(${name} PUBLIC
    $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
    $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
    $<INSTALL_INTERFACE:include>)
  if(ARG_DEPENDS)
    add_dependencies(${name} ${ARG_DEPENDS})
  endif()
  if(ARG_MLIR)
    target_link_libraries(${name} PUBLIC ${ARG_LINK_LIBS} MLIR LLVM)
  else()
    target_link_libraries(${name} PUBLIC ${ARG_LINK_LIBS} LLVM)
  endif()
  set_property(GLOBAL APPEND PROPERTY QLR_EXPORTED_LIBS ${name})
endfunction()

# add_qlr_unittest(<name> <sources...> LINK_LIBS <libs...>)
# A GoogleTest executable; the `check-qlr-unit` target runs all of them.
function(add_qlr_unittest name)
  cmake_parse_arguments(ARG "" "" "LINK_LIBS" ${ARGN})
  add_executable(${name} ${ARG_UNPARSED_ARGUMENTS})
  target_link_libraries(${name} PRIVATE ${ARG_LINK_LIBS} GTest::gtest_main)
  set_target_properties(${name} PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/unittests)
  gtest_discover_tests(${name} DISCOVERY_MODE PRE_TEST)
  set_property(GLOBAL APPEND PROPERTY QLR_UNITTESTS ${name})
endfunction()

# add_qlr_doc(<td-basename> <output-name> <tblgen-args...>)
# Generates <output-name>.md from the .td file in the current source directory
# into ${PROJECT_BINARY_DIR}/docs/generated as part of the default build. The
# checked-in copies under docs/generated are compared against these by the
# test suite (test/docs), and refreshed with scripts/update-docs.sh.
if(NOT TARGET qlr-doc)
  add_custom_target(qlr-doc ALL)
endif()
function(add_qlr_doc td_file output_name)
  set(LLVM_TARGET_DEFINITIONS ${td_file}.td)
  tablegen(MLIR ${output_name}.md ${ARGN})
  set(gen_doc ${PROJECT_BINARY_DIR}/docs/generated/${output_name}.md)
  add_custom_command(OUTPUT ${gen_doc}
    COMMAND ${CMAKE_COMMAND} -E copy
            ${CMAKE_CURRENT_BINARY_DIR}/${output_name}.md ${gen_doc}
    DEPENDS ${CMAKE_CURRENT_BINARY_DIR}/${output_name}.md)
  add_custom_target(${output_name}DocGen DEPENDS ${gen_doc})
  add_dependencies(qlr-doc ${output_name}DocGen)
endfunction()
