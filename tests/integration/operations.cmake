# Operations: the plumbing every service shares (services/common, common/
# metrics) run as real processes, and the deployment files checked with the
# tools that run here. Included by tests/integration/CMakeLists.txt.

if(TARGET linearize_server)
  # A minimal service built like the real ones, for the tests below.
  add_executable(ops_test_server ${CMAKE_CURRENT_LIST_DIR}/operations/ops_test_server.cc)
  target_link_libraries(ops_test_server PRIVATE linearize_server)
  target_compile_options(ops_test_server PRIVATE ${LINEARIZE_WARNINGS})

  # TLS + tokens + health + /metrics scraped by a real Prometheus (Debian's
  # package), queried with PromQL; graceful shutdown on SIGTERM.
  get_target_property(_ops_python linearize_proto LINEARIZE_PYTHON)
  get_target_property(_ops_stubs linearize_proto LINEARIZE_PYTHON_OUT)
  find_program(LINEARIZE_PROMETHEUS prometheus)
  if(_ops_python AND _ops_stubs AND LINEARIZE_PROMETHEUS)
    add_test(NAME operations_prometheus_scrape
             COMMAND ${_ops_python} ${CMAKE_CURRENT_LIST_DIR}/operations/ops_test.py
                     $<TARGET_FILE:ops_test_server> ${_ops_stubs} ${LINEARIZE_PROMETHEUS})
    set_tests_properties(operations_prometheus_scrape PROPERTIES
      LABELS "integration;operations"
      TIMEOUT 120
      ENVIRONMENT "GRPC_VERBOSITY=ERROR;PYTHONDONTWRITEBYTECODE=1")
  else()
    message(STATUS "linearize: operations_prometheus_scrape skipped "
                   "(needs the venv's grpcio-tools and Debian's prometheus; run scripts/setup)")
  endif()
endif()

# deploy/: Prometheus config and alert rules (promtool, with rule unit
# tests), the Grafana dashboard's queries, docker-compose.yml and the
# Kubernetes manifests.
find_program(LINEARIZE_PROMTOOL promtool)
set(_deploy_python ${CMAKE_SOURCE_DIR}/.venv/bin/python)
if(LINEARIZE_PROMTOOL AND EXISTS ${_deploy_python})
  add_test(NAME deploy_check
           COMMAND ${_deploy_python} ${CMAKE_CURRENT_LIST_DIR}/operations/check_deploy.py
                   ${CMAKE_SOURCE_DIR} ${LINEARIZE_PROMTOOL})
  set_tests_properties(deploy_check PROPERTIES
    LABELS "deploy"
    TIMEOUT 120
    ENVIRONMENT "PYTHONDONTWRITEBYTECODE=1")
endif()
