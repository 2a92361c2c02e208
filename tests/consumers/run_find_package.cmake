# Installs tenure from its build tree into a fresh prefix, then configures, builds and runs a
# consumer project that finds it with find_package(tenure CONFIG) and nothing else. PROGRAM names
# the consumer's executable to run (default: find_package_consumer).
foreach(var TENURE_BUILD_DIR WORK_DIR CONSUMER_DIR GENERATOR CXX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_find_package.cmake: ${var} is not set")
  endif()
endforeach()

if(NOT DEFINED PROGRAM)
  set(PROGRAM find_package_consumer)
endif()

set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}")
  endif()
endfunction()

run(${CMAKE_COMMAND} --install ${TENURE_BUILD_DIR} --prefix ${prefix})
if(NOT EXISTS ${prefix}/share/cmake/tenure/tenureConfigVersion.cmake)
  message(FATAL_ERROR "install produced no tenureConfigVersion.cmake")
endif()
run(${CMAKE_COMMAND} -S ${CONSUMER_DIR} -B ${build} -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix})
run(${CMAKE_COMMAND} --build ${build})
run(${build}/${PROGRAM})
# A consumer may build more programs to run (find_package: the getting-started walk-through).
if(EXISTS ${build}/custom_policies)
  run(${build}/custom_policies)
endif()
