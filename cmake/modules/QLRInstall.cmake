# Installation: headers, static libraries, tools and a CMake package so that
# downstream projects can `find_package(QLR)` and link `QLR::<library>`.

include(CMakePackageConfigHelpers)
include(GNUInstallDirs)

set(QLR_INSTALL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/qlr)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/qlr
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h" PATTERN "*.td")
# The C interface of compiled models (qlr-compile).
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/qlr-c
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(DIRECTORY ${PROJECT_BINARY_DIR}/include/qlr
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.inc"
        PATTERN "CMakeFiles" EXCLUDE)

get_property(qlr_libs GLOBAL PROPERTY QLR_EXPORTED_LIBS)
install(TARGETS ${qlr_libs}
        EXPORT QLRTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT QLRTargets
        NAMESPACE QLR::
        DESTINATION ${QLR_INSTALL_CMAKE_DIR})

string(REPLACE ";" " " QLR_EXPORTED_LIBS_LIST "${qlr_libs}")
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/QLRConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/QLRConfig.cmake
  INSTALL_DESTINATION ${QLR_INSTALL_CMAKE_DIR}
  PATH_VARS CMAKE_INSTALL_INCLUDEDIR)
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/QLRConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cmake/QLRConfig.cmake
              ${PROJECT_BINARY_DIR}/cmake/QLRConfigVersion.cmake
        DESTINATION ${QLR_INSTALL_CMAKE_DIR})
