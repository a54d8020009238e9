# Inference: linearize-inference, linearize-loadgen and `linearize chat` as
# real processes on loopback: a bounded load test, a chat that keeps its
# session, kill -9 and restart with persisted sessions, /metrics.
if(TARGET linearize-inference AND TARGET linearize-loadgen AND TARGET linearize)
  add_executable(write_tiny_model ${CMAKE_CURRENT_LIST_DIR}/inference/write_tiny_model.cc)
  target_link_libraries(write_tiny_model PRIVATE linearize_model GTest::gtest)
  linearize_use_torch_pch(write_tiny_model)
  target_compile_definitions(write_tiny_model PRIVATE
    LINEARIZE_FIXTURES_DIR="${CMAKE_SOURCE_DIR}/tests/fixtures")
  get_target_property(_inf_python linearize_proto LINEARIZE_PYTHON)
  get_target_property(_inf_stubs linearize_proto LINEARIZE_PYTHON_OUT)
  if(_inf_python AND _inf_stubs)
    # 64 sessions for 60 s, as the load test's specification says.
    add_test(NAME inference_processes
             COMMAND ${_inf_python} ${CMAKE_CURRENT_LIST_DIR}/inference/inference_test.py
                     ${CMAKE_BINARY_DIR} ${_inf_stubs} 64 60)
    set_tests_properties(inference_processes PROPERTIES
      LABELS "integration;inference"
      TIMEOUT 300
      ENVIRONMENT "GRPC_VERBOSITY=ERROR;PYTHONDONTWRITEBYTECODE=1")
  endif()
endif()

# Every service scraped by a real Prometheus (Debian's package): scheduler,
# worker, evaluator and inference as processes, their /metrics queried with
# PromQL (tests/integration/operations/services_scrape_test.py).
find_program(LINEARIZE_PROMETHEUS prometheus)
if(TARGET write_tiny_model AND TARGET linearize-worker AND TARGET linearize-evaluator
   AND LINEARIZE_PROMETHEUS)
  get_target_property(_scrape_python linearize_proto LINEARIZE_PYTHON)
  get_target_property(_scrape_stubs linearize_proto LINEARIZE_PYTHON_OUT)
  add_test(NAME services_prometheus_scrape
           COMMAND ${_scrape_python} ${CMAKE_CURRENT_LIST_DIR}/operations/services_scrape_test.py
                   ${CMAKE_BINARY_DIR} ${_scrape_stubs} ${CMAKE_SOURCE_DIR} ${LINEARIZE_PROMETHEUS})
  set_tests_properties(services_prometheus_scrape PROPERTIES
    LABELS "integration;operations" TIMEOUT 180
    ENVIRONMENT "GRPC_VERBOSITY=ERROR;PYTHONDONTWRITEBYTECODE=1;OMP_NUM_THREADS=1")
endif()
