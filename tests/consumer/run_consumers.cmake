# Builds tests/consumer twice: once with aq added as a subdirectory, once through
# find_package(aq) against a fresh `cmake --install` of aq.
file(REMOVE_RECURSE ${WORK_DIR})
set(consumer_src ${AQ_SOURCE_DIR}/tests/consumer)

function(run_step)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed: ${ARGV}\n${out}\n${err}")
  endif()
endfunction()

run_step(${CMAKE_COMMAND} -S ${consumer_src} -B ${WORK_DIR}/subdir -G ${GENERATOR}
         -DAQ_VIA_SUBDIR=ON -DAQ_SOURCE_DIR=${AQ_SOURCE_DIR})
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/subdir)
run_step(${WORK_DIR}/subdir/consumer)

run_step(${CMAKE_COMMAND} -S ${AQ_SOURCE_DIR} -B ${WORK_DIR}/aq-build -G ${GENERATOR}
         -DAQ_WITH_CUDA=OFF -DAQ_BUILD_TESTS=OFF -DAQ_BUILD_EXAMPLES=OFF -DAQ_BUILD_BENCHMARKS=OFF
         -DAQ_INSTALL=ON -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix)
run_step(${CMAKE_COMMAND} --install ${WORK_DIR}/aq-build)
run_step(${CMAKE_COMMAND} -S ${consumer_src} -B ${WORK_DIR}/installed -G ${GENERATOR}
         -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
run_step(${CMAKE_COMMAND} --build ${WORK_DIR}/installed)
run_step(${WORK_DIR}/installed/consumer)
message(STATUS "consumer projects built and ran")
