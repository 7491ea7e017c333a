# LibTorch comes from the installed Python `torch` package so that Python and C++ share one
# runtime and tensors cross the binding without a copy.
find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module)
if(NOT Torch_DIR)
  execute_process(
    COMMAND ${Python3_EXECUTABLE} -c "import torch.utils; print(torch.utils.cmake_prefix_path)"
    OUTPUT_VARIABLE _torch_prefix OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _torch_rc)
  if(NOT _torch_rc EQUAL 0)
    message(FATAL_ERROR "SpeechLens needs the Python package torch (pip install torch==2.13.0) "
                        "for ${Python3_EXECUTABLE}")
  endif()
  list(APPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
endif()
find_package(Torch REQUIRED)
set(TORCH_LIB_DIR "${TORCH_INSTALL_PREFIX}/lib")

find_package(PkgConfig REQUIRED)
find_package(SndFile QUIET CONFIG)
if(NOT TARGET SndFile::sndfile)
  pkg_check_modules(SNDFILE REQUIRED IMPORTED_TARGET sndfile)
  add_library(SndFile::sndfile ALIAS PkgConfig::SNDFILE)
endif()
find_package(nlohmann_json 3 REQUIRED)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
find_package(spdlog REQUIRED)
