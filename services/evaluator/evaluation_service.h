// EvaluationService over gRPC (proto/linearize/v1/evaluation_service.proto).
// Evaluations are queued and run one at a time on a runner thread; each is
// a resource (its report) that runs to its end whether or not anyone
// streams it. Reports are kept in memory and written to
// evaluations/<report_id>/report.{json,md} under the artifact root when
// they end; GetReport falls back to that file for reports of an earlier
// process (and for reports of jobs' EVALUATE stages, which the task runner
// files there). Every call acts for its caller's tenant.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/metrics/counter.h"
#include "common/metrics/family.h"
#include "common/metrics/gauge.h"
#include "common/metrics/registry.h"
#include "linearize/v1/evaluation_service.grpc.pb.h"
#include "services/evaluator/model_resolver.h"

namespace linearize::evaluator {

struct ServiceOptions {
  std::string artifact_root;               // absolute
  std::vector<std::string> default_texts;  // unused by Evaluate (sources are required there)
  int max_active_per_tenant = 4;           // QUEUED + RUNNING
  const ModelResolver* resolver = nullptr;  // required
  metrics::Registry* registry = nullptr;    // optional: evaluation metrics
};

// The folder of a report's files, relative to the artifact root.
std::string ReportDir(const std::string& report_id);

class EvaluationServiceImpl final : public v1::EvaluationService::Service {
 public:
  explicit EvaluationServiceImpl(ServiceOptions options);
  ~EvaluationServiceImpl() override;  // Drain()

  grpc::Status Evaluate(grpc::ServerContext* context, const v1::EvaluateRequest* request,
                        grpc::ServerWriter<v1::EvaluationEvent>* writer) override;
  grpc::Status GetReport(grpc::ServerContext* context, const v1::GetReportRequest* request,
                         v1::EvaluationReport* response) override;
  grpc::Status CancelEvaluation(grpc::ServerContext* context,
                                const v1::CancelEvaluationRequest* request,
                                v1::EvaluationReport* response) override;

  // Records a finished report made elsewhere (a job's EVALUATE stage) so
  // GetReport serves it.
  void AddFinishedReport(const v1::EvaluationReport& report);

  // Refuses new evaluations (UNAVAILABLE), cancels the queued and running
  // ones (their streams get the CANCELLED report and end) and stops the
  // runner. Idempotent.
  void Drain();

 private:
  struct Evaluation;
  void RunLoop();
  void Run(const std::shared_ptr<Evaluation>& e);
  // Ends an evaluation: state, end time, files, final event. mu_ held.
  void FinishLocked(Evaluation& e, v1::EvaluationState state, const std::string& error);
  void PushLocked(Evaluation& e, v1::EvaluationEvent event);
  std::shared_ptr<Evaluation> FindLocked(const std::string& tenant, const std::string& id);

  const ServiceOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;  // new events, state changes, queue
  std::map<std::string, std::shared_ptr<Evaluation>> evaluations_;        // by report_id
  std::map<std::pair<std::string, std::string>, std::string> request_ids_;  // (tenant, id) -> report
  std::map<std::string, v1::EvaluationReport> finished_elsewhere_;        // by report_id
  std::deque<std::shared_ptr<Evaluation>> queue_;
  bool draining_ = false;
  std::thread runner_;
  metrics::Family<metrics::Counter>* ended_ = nullptr;
  metrics::Gauge* active_ = nullptr;
};

}  // namespace linearize::evaluator
