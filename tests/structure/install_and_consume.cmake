# Installs this build into a scratch prefix, then configures, builds and runs the consumer
# project (consumer/) against it (ctest InstalledPackageServesACoreAndAnEmbeddingService).
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -P install_and_consume.cmake
function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out
                    ERROR_VARIABLE out)
    if(NOT status EQUAL 0)
        message(FATAL_ERROR "failed (${status}): ${ARGN}\n${out}")
    endif()
    set(output "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/structure/consumer -B ${WORK_DIR}/build -G Ninja
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix
    -DSHARDCAST_EMBED_EXAMPLE=${SOURCE_DIR}/docs/examples/embed.cpp)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/core_only)
message(STATUS "${output}")
run(${WORK_DIR}/build/embed --ticks 1)
if(NOT output MATCHES "online: 0")
    message(FATAL_ERROR "the embedding example printed:\n${output}")
endif()
message(STATUS "${output}")
