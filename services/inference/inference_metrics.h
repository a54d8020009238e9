// The inference service's Prometheus metrics, named after vLLM's:
// latency histograms (time to first token, inter-token, end to end), token
// counters, running/waiting generations, resident/spilled state bytes, the
// engine's batch sizes and session lifecycle transitions.
#pragma once

#include <memory>
#include <string>

#include "common/metrics/counter.h"
#include "common/metrics/family.h"
#include "common/metrics/gauge.h"
#include "common/metrics/histogram.h"
#include "common/metrics/registry.h"

namespace linearize::inference {

struct InferenceMetrics {
  explicit InferenceMetrics(metrics::Registry& registry);

  metrics::Histogram* time_to_first_token;
  metrics::Histogram* inter_token_latency;
  metrics::Histogram* e2e_latency;
  metrics::Histogram* batch_size;
  metrics::Counter* generation_tokens;
  metrics::Counter* prompt_tokens;
  metrics::Family<metrics::Counter>* requests;  // {finish_reason}
  metrics::Family<metrics::Counter>* session_transitions;  // {from, to}
  metrics::Gauge* sessions_running;
  metrics::Gauge* sessions_waiting;
  metrics::Gauge* resident_bytes;
  metrics::Gauge* spilled_bytes;
  metrics::Gauge* resident_sessions;
  metrics::Gauge* spilled_sessions;
};

}  // namespace linearize::inference
