// The shape of the v1 API as compiled into the binary: every service has
// exactly the agreed methods with the agreed request/response types and
// streaming kinds, and every create-like request carries a request_id.

#include <set>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include "linearize/v1/evaluation_service.grpc.pb.h"
#include "linearize/v1/inference_service.grpc.pb.h"
#include "linearize/v1/job_service.grpc.pb.h"
#include "linearize/v1/worker_service.grpc.pb.h"

namespace {

using google::protobuf::Descriptor;
using google::protobuf::DescriptorPool;
using google::protobuf::FieldDescriptor;
using google::protobuf::MethodDescriptor;
using google::protobuf::ServiceDescriptor;

enum class Kind { kUnary, kServerStream, kClientStream, kBidi };

struct MethodSpec {
  std::string name;
  std::string input;   // unqualified, in package linearize.v1
  std::string output;  // unqualified, in package linearize.v1
  Kind kind;
};

struct ServiceSpec {
  std::string name;
  std::vector<MethodSpec> methods;
};

const std::vector<ServiceSpec>& ExpectedApi() {
  static const auto* api = new std::vector<ServiceSpec>{
      {"JobService",
       {{"SubmitConversion", "SubmitConversionRequest", "Job", Kind::kUnary},
        {"GetJob", "GetJobRequest", "Job", Kind::kUnary},
        {"ListJobs", "ListJobsRequest", "ListJobsResponse", Kind::kUnary},
        {"WatchJob", "WatchJobRequest", "JobEvent", Kind::kServerStream},
        {"CancelJob", "CancelJobRequest", "Job", Kind::kUnary},
        {"GetJobLogs", "GetJobLogsRequest", "GetJobLogsResponse", Kind::kUnary}}},
      {"WorkerService",
       {{"RegisterWorker", "RegisterWorkerRequest", "RegisterWorkerResponse", Kind::kUnary},
        {"LeaseTask", "LeaseTaskRequest", "LeaseTaskResponse", Kind::kUnary},
        {"Heartbeat", "HeartbeatRequest", "HeartbeatResponse", Kind::kUnary},
        {"CompleteTask", "CompleteTaskRequest", "CompleteTaskResponse", Kind::kUnary},
        {"FailTask", "FailTaskRequest", "FailTaskResponse", Kind::kUnary},
        {"DeregisterWorker", "DeregisterWorkerRequest", "DeregisterWorkerResponse",
         Kind::kUnary}}},
      {"EvaluationService",
       {{"Evaluate", "EvaluateRequest", "EvaluationEvent", Kind::kServerStream},
        {"GetReport", "GetReportRequest", "EvaluationReport", Kind::kUnary},
        {"CancelEvaluation", "CancelEvaluationRequest", "EvaluationReport", Kind::kUnary}}},
      {"InferenceService",
       {{"ListModels", "ListModelsRequest", "ListModelsResponse", Kind::kUnary},
        {"LoadModel", "LoadModelRequest", "ModelInfo", Kind::kUnary},
        {"UnloadModel", "UnloadModelRequest", "ModelInfo", Kind::kUnary},
        {"CreateSession", "CreateSessionRequest", "Session", Kind::kUnary},
        {"GetSession", "GetSessionRequest", "Session", Kind::kUnary},
        {"ListSessions", "ListSessionsRequest", "ListSessionsResponse", Kind::kUnary},
        {"ForkSession", "ForkSessionRequest", "Session", Kind::kUnary},
        {"SnapshotSession", "SnapshotSessionRequest", "SessionSnapshot", Kind::kUnary},
        {"RestoreSession", "RestoreSessionRequest", "Session", Kind::kUnary},
        {"DeleteSession", "DeleteSessionRequest", "DeleteSessionResponse", Kind::kUnary},
        {"Generate", "GenerateRequest", "GenerateResponse", Kind::kServerStream},
        {"Chat", "ChatRequest", "ChatResponse", Kind::kBidi}}},
  };
  return *api;
}

Kind KindOf(const MethodDescriptor& m) {
  if (m.client_streaming() && m.server_streaming()) return Kind::kBidi;
  if (m.client_streaming()) return Kind::kClientStream;
  if (m.server_streaming()) return Kind::kServerStream;
  return Kind::kUnary;
}

const char* KindName(Kind k) {
  switch (k) {
    case Kind::kUnary: return "unary";
    case Kind::kServerStream: return "server-streaming";
    case Kind::kClientStream: return "client-streaming";
    case Kind::kBidi: return "bidi-streaming";
  }
  return "?";
}

// Touching each generated service makes sure its descriptors are linked in
// and registered with the generated pool.
const ServiceDescriptor* Service(const std::string& name) {
  static const bool linked = [] {
    return linearize::v1::JobService::service_full_name() != nullptr &&
           linearize::v1::WorkerService::service_full_name() != nullptr &&
           linearize::v1::EvaluationService::service_full_name() != nullptr &&
           linearize::v1::InferenceService::service_full_name() != nullptr;
  }();
  EXPECT_TRUE(linked);
  return DescriptorPool::generated_pool()->FindServiceByName("linearize.v1." + name);
}

TEST(ProtoApiShape, EveryServiceHasExactlyTheAgreedMethods) {
  for (const ServiceSpec& spec : ExpectedApi()) {
    SCOPED_TRACE(spec.name);
    const ServiceDescriptor* service = Service(spec.name);
    ASSERT_NE(service, nullptr) << "service linearize.v1." << spec.name << " missing";
    std::set<std::string> expected_names;
    for (const MethodSpec& m : spec.methods) {
      expected_names.insert(m.name);
      const MethodDescriptor* method = service->FindMethodByName(m.name);
      ASSERT_NE(method, nullptr) << spec.name << "." << m.name << " missing";
      EXPECT_EQ(method->input_type()->full_name(), "linearize.v1." + m.input)
          << spec.name << "." << m.name;
      EXPECT_EQ(method->output_type()->full_name(), "linearize.v1." + m.output)
          << spec.name << "." << m.name;
      EXPECT_EQ(KindOf(*method), m.kind)
          << spec.name << "." << m.name << " is " << KindName(KindOf(*method))
          << ", want " << KindName(m.kind);
    }
    for (int i = 0; i < service->method_count(); ++i) {
      EXPECT_TRUE(expected_names.count(service->method(i)->name()))
          << "unexpected method " << service->method(i)->full_name()
          << ": add it to ExpectedApi()";
    }
  }
}

TEST(ProtoApiShape, StreamingMethodsAreExactlyTheDocumentedOnes) {
  std::set<std::string> streaming;
  for (const ServiceSpec& spec : ExpectedApi()) {
    const ServiceDescriptor* service = Service(spec.name);
    ASSERT_NE(service, nullptr);
    for (int i = 0; i < service->method_count(); ++i) {
      const MethodDescriptor* m = service->method(i);
      if (KindOf(*m) != Kind::kUnary) streaming.insert(m->full_name());
    }
  }
  EXPECT_EQ(streaming, (std::set<std::string>{
                           "linearize.v1.JobService.WatchJob",
                           "linearize.v1.EvaluationService.Evaluate",
                           "linearize.v1.InferenceService.Generate",
                           "linearize.v1.InferenceService.Chat",
                       }));
}

void ExpectRequestId(const Descriptor* request) {
  ASSERT_NE(request, nullptr);
  const FieldDescriptor* field = request->FindFieldByName("request_id");
  ASSERT_NE(field, nullptr) << request->full_name() << " has no request_id";
  EXPECT_EQ(field->type(), FieldDescriptor::TYPE_STRING) << request->full_name();
  EXPECT_FALSE(field->is_repeated()) << request->full_name();
  EXPECT_EQ(field->containing_oneof(), nullptr) << request->full_name();
}

TEST(ProtoApiShape, CreateLikeRequestsCarryRequestId) {
  const std::vector<std::string> create_like = {
      "SubmitConversionRequest", "EvaluateRequest",      "RegisterWorkerRequest",
      "LoadModelRequest",        "CreateSessionRequest", "ForkSessionRequest",
      "RestoreSessionRequest",
  };
  for (const std::string& name : create_like) {
    SCOPED_TRACE(name);
    ExpectRequestId(
        DescriptorPool::generated_pool()->FindMessageTypeByName("linearize.v1." + name));
  }
}

// Any RPC named like a creation (now or added later) must be idempotent.
TEST(ProtoApiShape, EveryMethodNamedLikeACreationCarriesRequestId) {
  const std::vector<std::string> verbs = {"Submit", "Create",   "Fork",    "Restore",
                                          "Load",   "Register", "Evaluate"};
  int checked = 0;
  for (const ServiceSpec& spec : ExpectedApi()) {
    const ServiceDescriptor* service = Service(spec.name);
    ASSERT_NE(service, nullptr);
    for (int i = 0; i < service->method_count(); ++i) {
      const MethodDescriptor* m = service->method(i);
      for (const std::string& verb : verbs) {
        if (m->name().rfind(verb, 0) == 0) {
          SCOPED_TRACE(m->full_name());
          ExpectRequestId(m->input_type());
          ++checked;
          break;
        }
      }
    }
  }
  EXPECT_EQ(checked, 7);
}

// Chat can create a session too; it does so through a CreateSessionRequest.
TEST(ProtoApiShape, ChatCreatesSessionsThroughAnIdempotentRequest) {
  const Descriptor* start =
      DescriptorPool::generated_pool()->FindMessageTypeByName("linearize.v1.ChatStart");
  ASSERT_NE(start, nullptr);
  const FieldDescriptor* create = start->FindFieldByName("create_session");
  ASSERT_NE(create, nullptr);
  ASSERT_EQ(create->type(), FieldDescriptor::TYPE_MESSAGE);
  ExpectRequestId(create->message_type());
}

// Fields whose zero value is a meaningful setting distinct from the default
// must track presence (see "Defaults and presence" in common.proto).
TEST(ProtoApiShape, ZeroMeaningfulFieldsTrackPresence) {
  const std::vector<std::pair<std::string, std::string>> fields = {
      {"SamplingParams", "temperature"},      {"SamplingParams", "top_p"},
      {"SamplingParams", "repetition_penalty"}, {"SamplingParams", "seed"},
      {"TrainingParams", "learning_rate"},    {"TrainingParams", "early_stopping_patience"},
      {"LoraParams", "dropout"},              {"LoraParams", "alpha"},
      {"StageProgress", "loss"},
  };
  for (const auto& [message, field_name] : fields) {
    const Descriptor* d =
        DescriptorPool::generated_pool()->FindMessageTypeByName("linearize.v1." + message);
    ASSERT_NE(d, nullptr) << message;
    const FieldDescriptor* f = d->FindFieldByName(field_name);
    ASSERT_NE(f, nullptr) << message << "." << field_name;
    EXPECT_TRUE(f->has_presence()) << message << "." << field_name;
  }
}

}  // namespace
