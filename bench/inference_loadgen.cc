// linearize-loadgen: a bounded load test of linearize-inference. N clients
// each hold one session and stream generations back to back for a fixed
// time; the tool reports errors, time to first token, inter-token latency
// and throughput percentiles as JSON (stdout, and --out).
//
//   linearize-loadgen --server 127.0.0.1:50053 --model tiny --sessions 64 --seconds 60
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "linearize/v1/inference_service.grpc.pb.h"

namespace {

namespace v1 = ::linearize::v1;
using Clock = std::chrono::steady_clock;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5));
  return v[i];
}

nlohmann::json Summary(const std::vector<double>& v) {
  return {{"count", v.size()},       {"p50", Percentile(v, 50)}, {"p90", Percentile(v, 90)},
          {"p99", Percentile(v, 99)}, {"max", Percentile(v, 100)}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"linearize-loadgen: concurrent streaming sessions against linearize-inference"};
  std::string server = "127.0.0.1:50053", model, token, out;
  int sessions = 64, max_tokens = 16;
  double seconds = 60;
  app.add_option("--server", server, "inference address")->capture_default_str();
  app.add_option("--model", model, "loaded model name")->required();
  app.add_option("--token", token, "bearer token");
  app.add_option("--sessions", sessions, "concurrent sessions")->capture_default_str();
  app.add_option("--seconds", seconds, "how long to run")->capture_default_str();
  app.add_option("--max-tokens", max_tokens, "tokens per generation")->capture_default_str();
  app.add_option("--out", out, "also write the JSON here");
  CLI11_PARSE(app, argc, argv);

  auto channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  std::mutex mu;
  std::vector<double> ttft, itl, e2e;
  std::vector<std::string> errors;
  std::atomic<int64_t> tokens{0}, requests{0};
  const Clock::time_point start = Clock::now();
  const Clock::time_point stop = start + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(seconds));
  auto client = [&](int index) {
    auto stub = v1::InferenceService::NewStub(channel);
    auto auth = [&](grpc::ClientContext& ctx) {
      if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    };
    v1::CreateSessionRequest create;
    create.set_model_name(model);
    v1::Session session;
    {
      grpc::ClientContext ctx;
      auth(ctx);
      grpc::Status s = stub->CreateSession(&ctx, create, &session);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        errors.push_back("CreateSession: " + s.error_message());
        return;
      }
    }
    for (int turn = 0; Clock::now() < stop; ++turn) {
      v1::GenerateRequest req;
      req.set_session_id(session.session_id());
      req.set_prompt(" client " + std::to_string(index) + " turn " + std::to_string(turn));
      req.mutable_sampling()->set_max_tokens(max_tokens);
      req.mutable_sampling()->set_temperature(0.7f);
      req.mutable_sampling()->set_seed(static_cast<uint64_t>(index * 1000 + turn));
      req.mutable_sampling()->set_ignore_eos(true);
      grpc::ClientContext ctx;
      auth(ctx);
      const Clock::time_point t0 = Clock::now();
      Clock::time_point last{};
      std::vector<double> my_itl;
      double my_ttft = -1;
      int64_t n = 0;
      auto reader = stub->Generate(&ctx, req);
      v1::GenerateResponse msg;
      while (reader->Read(&msg)) {
        if (!msg.has_delta() || msg.delta().token_ids_size() == 0) continue;
        const Clock::time_point now = Clock::now();
        if (my_ttft < 0) {
          my_ttft = std::chrono::duration<double>(now - t0).count();
        } else {
          my_itl.push_back(std::chrono::duration<double>(now - last).count());
        }
        last = now;
        n += msg.delta().token_ids_size();
      }
      grpc::Status s = reader->Finish();
      std::lock_guard<std::mutex> lock(mu);
      if (!s.ok()) {
        errors.push_back("Generate: " + std::to_string(s.error_code()) + " " + s.error_message());
        continue;
      }
      ++requests;
      tokens += n;
      if (my_ttft >= 0) ttft.push_back(my_ttft);
      itl.insert(itl.end(), my_itl.begin(), my_itl.end());
      e2e.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    }
    grpc::ClientContext ctx;
    auth(ctx);
    v1::DeleteSessionRequest del;
    del.set_session_id(session.session_id());
    v1::DeleteSessionResponse ignored;
    (void)stub->DeleteSession(&ctx, del, &ignored);
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < sessions; ++i) threads.emplace_back(client, i);
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  nlohmann::json result = {
      {"command", [&] {
         std::string c;
         for (int i = 0; i < argc; ++i) c += (i ? " " : "") + std::string(argv[i]);
         return c;
       }()},
      {"sessions", sessions},
      {"seconds", elapsed},
      {"requests", requests.load()},
      {"tokens", tokens.load()},
      {"tokens_per_second", tokens.load() / elapsed},
      {"errors", errors.size()},
      {"first_errors", std::vector<std::string>(errors.begin(), errors.begin() + std::min<size_t>(errors.size(), 5))},
      {"time_to_first_token_seconds", Summary(ttft)},
      {"inter_token_latency_seconds", Summary(itl)},
      {"e2e_latency_seconds", Summary(e2e)}};
  std::cout << result.dump(2) << "\n";
  if (!out.empty()) std::ofstream(out) << result.dump(2) << "\n";
  return errors.empty() && requests.load() > 0 ? 0 : 1;
}
