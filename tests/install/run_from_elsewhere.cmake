# Runs aq-autoquant on its built-in default from an unrelated working directory (/) and checks
# that it succeeds, writes its reports and read the bundled captions from the expected data
# directory: found next to the program, never through the working directory.
#   -DPROGRAM=<exe>                          the build-tree program, or
#   -DBUILD_DIR=<build> (PROGRAM unset)      `cmake --install` it into WORK_DIR/prefix and run
#                                            <prefix>/bin/aq-autoquant
#   -DEXPECTED_DATA=<dir>                    the data directory the run must use (build tree)
#   -DWORK_DIR=<scratch>
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run_step)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=AQ_DATA_DIR ${ARGV} WORKING_DIRECTORY /
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed (${rc}): ${ARGV}\n${out}\n${err}")
  endif()
endfunction()

if(NOT PROGRAM)
  run_step(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
  set(PROGRAM ${WORK_DIR}/prefix/bin/aq-autoquant)
  set(EXPECTED_DATA ${WORK_DIR}/prefix/share/aq/data)
endif()

run_step(${PROGRAM} --output-dir ${WORK_DIR}/out --num-samples 8)
foreach(file autoquant_lm_quant_manifest.json per-layer-sensitivity.json per-layer-sensitivity.md)
  if(NOT EXISTS ${WORK_DIR}/out/${file})
    message(FATAL_ERROR "${PROGRAM} wrote no ${file} in ${WORK_DIR}/out")
  endif()
endforeach()
file(READ ${WORK_DIR}/out/autoquant_lm_quant_manifest.json manifest)
string(FIND "${manifest}" "\"${EXPECTED_DATA}/captions/coco2017_captions_medium.txt\"" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the run did not read its captions from ${EXPECTED_DATA}")
endif()
message(STATUS "${PROGRAM} ran from / with the data in ${EXPECTED_DATA}")
