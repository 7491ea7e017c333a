# Installs the "cpp" component into a scratch prefix and builds examples/cpp against it, as a
# downstream C++ project would with find_package(SpeechLens).
set(prefix "${BUILD_DIR}/consumer-test/prefix")
set(consumer_build "${BUILD_DIR}/consumer-test/build")
file(REMOVE_RECURSE "${prefix}")
if(NOT EXISTS "${BUILD_DIR}/test-data/models/whisper_tiny/config.json")
  message(FATAL_ERROR "fixtures missing: run tests/fixtures/make_fixtures.py ${BUILD_DIR}/test-data first")
endif()
foreach(step
    "${CMAKE_COMMAND};--install;${BUILD_DIR};--prefix;${prefix};--component;cpp"
    "${CMAKE_COMMAND};-S;${SOURCE_DIR}/examples/cpp;-B;${consumer_build};-DCMAKE_PREFIX_PATH=${prefix};-DTorch_DIR=${Torch_DIR};-DCMAKE_BUILD_TYPE=Release"
    "${CMAKE_COMMAND};--build;${consumer_build}"
    "${consumer_build}/speechlens_consumer;${BUILD_DIR}/test-data/models/whisper_tiny")
  execute_process(COMMAND ${step} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer step failed (${rc}): ${step}")
  endif()
endforeach()
