# Two install components. "python" is what a pip wheel holds (scikit-build-core installs only
# it): the core library beside the extension module. "cpp" gives a C++ consumer headers, the
# library and a find_package(SpeechLens) config exporting SpeechLens::speechlens.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS speechlens LIBRARY DESTINATION speechlens COMPONENT python)

install(TARGETS speechlens EXPORT SpeechLensTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT cpp
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT cpp
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT cpp)
install(DIRECTORY include/speechlens DESTINATION ${CMAKE_INSTALL_INCLUDEDIR} COMPONENT cpp)
install(EXPORT SpeechLensTargets NAMESPACE SpeechLens::
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/SpeechLens COMPONENT cpp)
configure_package_config_file(cmake/SpeechLensConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/SpeechLensConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/SpeechLens)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/SpeechLensConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/SpeechLensConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/SpeechLensConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/SpeechLens COMPONENT cpp)
