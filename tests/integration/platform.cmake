# Platform integration tests: the real linearize-scheduler binary on a free
# loopback port with a SQLite store, driven by a Python client through the
# generated stubs (tests/integration/platform/scheduler_test.py), and by the
# `linearize` job commands (platform/cli_jobs_test.py; needs the CLI, so a
# LibTorch build).
if(TARGET linearize-scheduler AND TARGET linearize_proto_python)
  get_target_property(_platform_python linearize_proto LINEARIZE_PYTHON)
  get_target_property(_platform_stubs linearize_proto LINEARIZE_PYTHON_OUT)
  add_test(NAME scheduler_process
           COMMAND ${_platform_python} ${CMAKE_CURRENT_LIST_DIR}/platform/scheduler_test.py
                   $<TARGET_FILE:linearize-scheduler> ${_platform_stubs} ${CMAKE_SOURCE_DIR})
  set_tests_properties(scheduler_process PROPERTIES
    LABELS integration TIMEOUT 300
    ENVIRONMENT "GRPC_VERBOSITY=ERROR;PYTHONDONTWRITEBYTECODE=1")
endif()

# Two scheduler replicas on one real PostgreSQL (scripts/pg-test-server).
if(TARGET linearize-scheduler AND TARGET linearize_proto_python)
  add_test(NAME scheduler_replicas
           COMMAND ${_platform_python} ${CMAKE_CURRENT_LIST_DIR}/platform/replicas_test.py
                   $<TARGET_FILE:linearize-scheduler> ${_platform_stubs} ${CMAKE_SOURCE_DIR})
  set_tests_properties(scheduler_replicas PROPERTIES
    LABELS integration TIMEOUT 300
    ENVIRONMENT "GRPC_VERBOSITY=ERROR;PYTHONDONTWRITEBYTECODE=1")
endif()

if(TARGET linearize AND TARGET linearize-scheduler AND TARGET linearize_proto_python
   AND LINEARIZE_WITH_SERVICES)
  get_target_property(_platform_python linearize_proto LINEARIZE_PYTHON)
  get_target_property(_platform_stubs linearize_proto LINEARIZE_PYTHON_OUT)
  add_test(NAME cli_jobs
           COMMAND ${_platform_python} ${CMAKE_CURRENT_LIST_DIR}/platform/cli_jobs_test.py
                   $<TARGET_FILE:linearize> $<TARGET_FILE:linearize-scheduler>
                   ${_platform_stubs} ${CMAKE_SOURCE_DIR})
  set_tests_properties(cli_jobs PROPERTIES
    LABELS integration TIMEOUT 120
    ENVIRONMENT "GRPC_VERBOSITY=ERROR;PYTHONDONTWRITEBYTECODE=1")
endif()

# The processes that do the work: linearize-scheduler (SQLite) with one
# linearize-evaluator and successive linearize-workers; a tiny LoLCATs
# conversion through every stage, its evaluation report and published
# checkpoint, then kill -9 and SIGTERM of workers mid-stage with resumes
# from their checkpoints (tests/integration/platform/worker_test.py).
if(TARGET linearize-scheduler AND TARGET linearize-worker AND TARGET linearize-evaluator
   AND TARGET linearize_proto_python)
  get_target_property(_worker_python linearize_proto LINEARIZE_PYTHON)
  get_target_property(_worker_stubs linearize_proto LINEARIZE_PYTHON_OUT)
  if(TARGET linearize)
    set(_worker_cli $<TARGET_FILE:linearize>)
  else()
    set(_worker_cli -)
  endif()
  add_test(NAME worker_processes
           COMMAND ${_worker_python} ${CMAKE_CURRENT_LIST_DIR}/platform/worker_test.py
                   $<TARGET_FILE:linearize-scheduler> $<TARGET_FILE:linearize-worker>
                   $<TARGET_FILE:linearize-evaluator> ${_worker_cli} ${_worker_stubs}
                   ${CMAKE_SOURCE_DIR})
  set_tests_properties(worker_processes PROPERTIES
    LABELS integration TIMEOUT 300
    ENVIRONMENT "GRPC_VERBOSITY=ERROR;PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=1")
endif()
