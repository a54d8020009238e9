#include "services/inference/inference_metrics.h"

namespace linearize::inference {

InferenceMetrics::InferenceMetrics(metrics::Registry& r) {
  using namespace metrics;
  const auto latency = ExponentialBuckets(0.001, 2, 16);  // 1 ms .. 33 s
  time_to_first_token = &BuildHistogram()
                             .Name("linearize_inference_time_to_first_token_seconds")
                             .Help("From receiving a generation to its first token.")
                             .Register(r)
                             .Add({}, latency);
  inter_token_latency = &BuildHistogram()
                             .Name("linearize_inference_inter_token_latency_seconds")
                             .Help("Between consecutive tokens of one generation.")
                             .Register(r)
                             .Add({}, latency);
  e2e_latency = &BuildHistogram()
                     .Name("linearize_inference_e2e_request_latency_seconds")
                     .Help("From receiving a generation to its end.")
                     .Register(r)
                     .Add({}, latency);
  batch_size = &BuildHistogram()
                    .Name("linearize_inference_batch_size")
                    .Help("Generations one engine step decoded together.")
                    .Register(r)
                    .Add({}, ExponentialBuckets(1, 2, 9));
  generation_tokens = &BuildCounter()
                           .Name("linearize_inference_generation_tokens_total")
                           .Help("Tokens generated.")
                           .Register(r)
                           .Add({});
  prompt_tokens = &BuildCounter()
                       .Name("linearize_inference_prompt_tokens_total")
                       .Help("Input tokens prefilled.")
                       .Register(r)
                       .Add({});
  requests = &BuildCounter()
                  .Name("linearize_inference_requests_total")
                  .Help("Generations that ended, by finish reason.")
                  .Register(r);
  session_transitions = &BuildCounter()
                             .Name("linearize_inference_session_transitions_total")
                             .Help("Session lifecycle transitions (see inference_service.proto).")
                             .Register(r);
  sessions_running = &BuildGauge()
                          .Name("linearize_inference_sessions_running")
                          .Help("Generations the engines are stepping.")
                          .Register(r)
                          .Add({});
  sessions_waiting = &BuildGauge()
                          .Name("linearize_inference_sessions_waiting")
                          .Help("Generations queued for an engine slot.")
                          .Register(r)
                          .Add({});
  auto& bytes = BuildGauge()
                    .Name("linearize_inference_state_bytes")
                    .Help("Bytes of session state, in memory (resident) or on disk (spilled).")
                    .Register(r);
  resident_bytes = &bytes.Add({{"where", "resident"}});
  spilled_bytes = &bytes.Add({{"where", "spilled"}});
  auto& sessions = BuildGauge()
                       .Name("linearize_inference_sessions")
                       .Help("Live sessions, resident or spilled.")
                       .Register(r);
  resident_sessions = &sessions.Add({{"where", "resident"}});
  spilled_sessions = &sessions.Add({{"where", "spilled"}});
}

}  // namespace linearize::inference
