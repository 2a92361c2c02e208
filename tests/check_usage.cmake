# Passes when `PROGRAM --help` exits 0 and prints its usage (a line starting "usage: NAME") on
# standard output and nothing on standard error.
execute_process(COMMAND ${PROGRAM} --help OUTPUT_VARIABLE out ERROR_VARIABLE err
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} --help exited with ${rc}")
endif()
if(NOT out MATCHES "usage: ${NAME}")
  message(FATAL_ERROR "${PROGRAM} --help printed no usage on stdout:\n${out}")
endif()
if(NOT err STREQUAL "")
  message(FATAL_ERROR "${PROGRAM} --help wrote to stderr:\n${err}")
endif()
