# Runs the benchmark program briefly with JSON output and checks the result: every required
# benchmark is present, none reported an error, every one reports allocs_per_op, and it is 0 for
# those listed as zero-allocation.
#   cmake -DBENCHMARK=<program> -DOUTPUT=<json file> -P check_smoke.cmake
cmake_minimum_required(VERSION 3.21)  # string(JSON)

foreach(var BENCHMARK OUTPUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_smoke.cmake: -D${var}=... is required")
  endif()
endforeach()

# Google Benchmark 1.7 takes --benchmark_min_time as plain seconds (1.8 also accepts "0.001s" and
# "<n>x"; a plain number works in both).
execute_process(
  COMMAND ${BENCHMARK} --benchmark_min_time=0.001 --benchmark_format=json
          --benchmark_out=${OUTPUT} --benchmark_out_format=json
  RESULT_VARIABLE status
  OUTPUT_QUIET
  ERROR_VARIABLE errors)
if(NOT status EQUAL 0)
  message(FATAL_ERROR "benchmark program failed (${status}):\n${errors}")
endif()
file(READ ${OUTPUT} json)

# The hot paths that must not allocate: allocs_per_op must be 0.
set(zero_allocation
  BM_QuorumAckTracker_Record/3
  BM_QuorumAckTracker_Record/5
  BM_QuorumAckTracker_Record/7
  BM_QuorumAckTracker_QuorumAck
  BM_LeaseCoordinator_LeaseRead_FastPath/threads:1
  BM_LeaseCoordinator_LeaseRead_FastPath/threads:2
  BM_SimCluster_Commit/3/64
  BM_SimCluster_Commit/3/1024
  BM_SimCluster_Commit/5/64
  BM_SimCluster_Commit/5/1024
  BM_SimCluster_Commit_Observed/3/64
  BM_SimCluster_ReadIndex
  BM_Snapshot_Install)
# Every benchmark that must be present. FileStorage's batches are vectors, and MemoryStorage keeps
# each snapshot in a fresh vector: their allocs_per_op is reported, not required to be 0.
set(required ${zero_allocation}
  BM_Snapshot_Install_MemoryStorage
  BM_FileStorage_Append/1/real_time
  BM_FileStorage_Append/16/real_time
  BM_FileStorage_Append/256/real_time
  BM_RawFdatasync/real_time)

set(seen "")
set(problems "")
string(JSON count LENGTH "${json}" benchmarks)
if(count EQUAL 0)
  message(FATAL_ERROR "${OUTPUT} lists no benchmark")
endif()
math(EXPR last "${count} - 1")
foreach(i RANGE ${last})
  string(JSON name GET "${json}" benchmarks ${i} name)
  list(APPEND seen "${name}")
  string(JSON error_occurred ERROR_VARIABLE no_error GET "${json}" benchmarks ${i} error_occurred)
  if(NOT no_error AND error_occurred)
    string(JSON error_message ERROR_VARIABLE ignored GET "${json}" benchmarks ${i} error_message)
    list(APPEND problems "${name}: error: ${error_message}")
    continue()
  endif()
  string(JSON allocs ERROR_VARIABLE missing GET "${json}" benchmarks ${i} allocs_per_op)
  if(missing)
    list(APPEND problems "${name}: no allocs_per_op counter")
  elseif(name IN_LIST zero_allocation AND NOT allocs EQUAL 0)
    list(APPEND problems "${name}: allocs_per_op = ${allocs}, must be 0")
  endif()
endforeach()

list(JOIN seen ", " seen_text)
foreach(name IN LISTS required)
  if(NOT name IN_LIST seen)
    list(APPEND problems "${name}: missing (ran: ${seen_text})")
  endif()
endforeach()

if(problems)
  list(JOIN problems "\n  " text)
  message(FATAL_ERROR "benchmark smoke check failed:\n  ${text}")
endif()
message(STATUS "benchmark smoke check: ${count} benchmarks, all present, zero-allocation ones at 0")
