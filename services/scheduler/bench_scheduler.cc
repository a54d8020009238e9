// bench_scheduler: how fast the scheduler accepts jobs, and how quickly it
// dispatches their tasks to 50 simulated workers, over loopback gRPC.
//
//   bench_scheduler [--store URL] [--submit-jobs 1000] [--submit-clients 16]
//                   [--workers 50] [--dispatch-jobs 300] [--rate 20] [--json PATH]
//
// The scheduler is the real server code (Scheduler, as linearize-scheduler
// runs it) in this process; the clients and workers talk to it through
// gRPC stubs. Without --store it uses a fresh SQLite file (WAL,
// synchronous=FULL) in a temporary directory.
//
// Phase 1 (accept): `submit-clients` threads submit `submit-jobs` distinct
//   valid jobs as fast as they can; reports jobs/s and submit latency.
// Phase 2 (dispatch): `workers` worker threads long-poll LeaseTask and
//   complete each task at once; one client submits `dispatch-jobs` jobs
//   (4 tasks each) at `rate` jobs/s. Reports the latency from the
//   SubmitConversion call to the lease of the job's first task (first
//   dispatch, job acceptance included), and from a CompleteTask call to the
//   lease of the job's next task (hand-off between stages).
#include <stdlib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "linearize/v1/job_service.grpc.pb.h"
#include "linearize/v1/worker_service.grpc.pb.h"
#include "services/scheduler/scheduler_server.h"
#include "services/scheduler/sql_database.h"

namespace {

namespace v1 = ::linearize::v1;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Summary {
  size_t n = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
};

Summary Summarize(std::vector<double> v) {
  Summary s;
  s.n = v.size();
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))]; };
  s.p50 = at(0.5), s.p90 = at(0.9), s.p99 = at(0.99), s.max = v.back();
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / v.size();
  return s;
}

std::string Json(const Summary& s) {
  return absl::StrCat("{\"n\": ", s.n, ", \"mean_ms\": ", s.mean, ", \"p50_ms\": ", s.p50,
                      ", \"p90_ms\": ", s.p90, ", \"p99_ms\": ", s.p99, ", \"max_ms\": ", s.max,
                      "}");
}

v1::SubmitConversionRequest Request(int i) {
  v1::SubmitConversionRequest r;
  v1::ConversionSpec* spec = r.mutable_spec();
  spec->mutable_teacher()->set_artifact_path("models/tiny");
  spec->mutable_recipe()->set_kind(v1::RECIPE_KIND_LOLCATS);
  spec->mutable_data()->add_train()->set_path("data/train.txt");
  spec->mutable_budget()->set_cpu_only(true);
  r.set_request_id(absl::StrCat("bench-", i));
  r.set_display_name(absl::StrCat("bench job ", i));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_scheduler: job acceptance rate and dispatch latency of the scheduler"};
  std::string store_url, json_path;
  int submit_jobs = 1000, submit_clients = 16, workers = 50, dispatch_jobs = 300;
  double rate = 20;
  app.add_option("--store", store_url, "job store URL (default: a fresh SQLite file)");
  app.add_option("--submit-jobs", submit_jobs)->capture_default_str();
  app.add_option("--submit-clients", submit_clients)->capture_default_str();
  app.add_option("--workers", workers)->capture_default_str();
  app.add_option("--dispatch-jobs", dispatch_jobs)->capture_default_str();
  app.add_option("--rate", rate, "jobs/s submitted in the dispatch phase")->capture_default_str();
  app.add_option("--json", json_path, "also write the results here");
  CLI11_PARSE(app, argc, argv);

  char tmpl[] = "/tmp/linearize-bench-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return 1;
  const std::string dir = tmpl;
  const std::string root = dir + "/artifacts";
  fs::create_directories(root + "/models/tiny");
  fs::create_directories(root + "/data");
  fs::copy_file(std::string(LINEARIZE_SOURCE_DIR) + "/tests/fixtures/models/llama/config.json",
                root + "/models/tiny/config.json");
  std::ofstream(root + "/data/train.txt") << "text\n";
  if (store_url.empty()) store_url = "sqlite://" + dir + "/jobs.db";

  linearize::scheduler::SchedulerOptions options;
  options.store_url = store_url;
  options.artifact_root = root;
  options.store.max_queued_jobs_per_tenant = 0;
  options.store.max_running_jobs_per_tenant = 0;
  auto scheduler = linearize::scheduler::Scheduler::Start(options);
  if (!scheduler.ok()) {
    std::cerr << "bench_scheduler: " << scheduler.status().message() << "\n";
    return 1;
  }
  const std::string address = absl::StrCat("127.0.0.1:", (*scheduler)->port());
  auto channel = [&](int i) {
    grpc::ChannelArguments args;
    args.SetInt("linearize.channel", i);  // distinct channels, not one shared subchannel
    return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  };
  auto with_tenant = [](grpc::ClientContext& ctx, int tenant) {
    ctx.AddMetadata("x-linearize-tenant", absl::StrCat("tenant-", tenant));
  };

  // ---- Phase 1: acceptance rate ----
  std::vector<double> submit_ms;
  std::mutex mu;
  std::atomic<int> next{0}, errors{0};
  const Clock::time_point t0 = Clock::now();
  {
    std::vector<std::thread> clients;
    for (int c = 0; c < submit_clients; ++c) {
      clients.emplace_back([&, c] {
        auto stub = v1::JobService::NewStub(channel(c));
        for (int i = next++; i < submit_jobs; i = next++) {
          grpc::ClientContext ctx;
          with_tenant(ctx, i % 10);
          v1::Job job;
          const Clock::time_point s = Clock::now();
          grpc::Status st = stub->SubmitConversion(&ctx, Request(i), &job);
          const double ms = Ms(Clock::now() - s);
          std::lock_guard<std::mutex> lock(mu);
          if (!st.ok()) {
            if (errors++ < 3) std::cerr << "submit failed: " << st.error_message() << "\n";
            continue;
          }
          submit_ms.push_back(ms);
        }
      });
    }
    for (auto& t : clients) t.join();
  }
  const double accept_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  const int64_t accept_retries = linearize::scheduler::SqlConflictRetries();
  const double jobs_per_second = submit_ms.size() / accept_seconds;
  const Summary submit = Summarize(submit_ms);
  std::cerr << "accept: " << submit_ms.size() << " jobs in " << accept_seconds << " s = "
            << jobs_per_second << " jobs/s; submit p50 " << submit.p50 << " ms, p99 "
            << submit.p99 << " ms\n";

  // Cancel the phase-1 jobs so the dispatch phase starts from an empty queue.
  {
    auto stub = v1::JobService::NewStub(channel(0));
    for (int t = 0; t < 10; ++t) {
      std::string token;
      do {
        grpc::ClientContext ctx;
        with_tenant(ctx, t);
        v1::ListJobsRequest list;
        list.set_page_size(1000);
        list.add_states(v1::JOB_STATE_QUEUED);
        v1::ListJobsResponse page;
        if (!stub->ListJobs(&ctx, list, &page).ok()) break;
        for (const v1::Job& j : page.jobs()) {
          grpc::ClientContext c2;
          with_tenant(c2, t);
          v1::CancelJobRequest cancel;
          cancel.set_job_id(j.job_id());
          v1::Job out;
          stub->CancelJob(&c2, cancel, &out);
        }
        token = page.next_page_token();
      } while (!token.empty());
    }
  }

  // ---- Phase 2: dispatch latency with `workers` workers ----
  // job -> when the call that makes its next task runnable was sent
  std::map<std::string, Clock::time_point> ready_at;
  std::map<std::string, Clock::time_point> leased_first;  // leased before the submit returned
  std::vector<double> first_ms, handoff_ms;
  std::atomic<int> tasks_done{0};
  std::atomic<bool> stop{false};
  const int total_tasks = dispatch_jobs * 4;
  std::vector<std::thread> worker_threads;
  for (int w = 0; w < workers; ++w) {
    worker_threads.emplace_back([&, w] {
      auto stub = v1::WorkerService::NewStub(channel(100 + w % 8));
      v1::RegisterWorkerRequest reg;
      reg.set_hostname(absl::StrCat("sim-", w));
      reg.mutable_resources()->set_cpu_cores(1);
      reg.mutable_resources()->set_memory_bytes(int64_t{1} << 30);
      v1::RegisterWorkerResponse me;
      {
        grpc::ClientContext ctx;
        if (!stub->RegisterWorker(&ctx, reg, &me).ok()) return;
      }
      while (!stop) {
        v1::LeaseTaskRequest lease;
        lease.set_worker_id(me.worker_id());
        lease.mutable_wait()->set_seconds(2);
        v1::LeaseTaskResponse got;
        grpc::ClientContext ctx;
        if (!stub->LeaseTask(&ctx, lease, &got).ok() || !got.has_task()) continue;
        const Clock::time_point leased = Clock::now();
        const v1::Task& t = got.task();
        {
          std::lock_guard<std::mutex> lock(mu);
          auto it = ready_at.find(t.job_id());
          if (it != ready_at.end()) {
            (t.kind() == v1::STAGE_ATTENTION_TRANSFER ? first_ms : handoff_ms)
                .push_back(Ms(leased - it->second));
          } else {
            leased_first[t.job_id()] = leased;  // before SubmitConversion returned
          }
        }
        v1::CompleteTaskRequest done;
        done.set_lease_id(t.lease_id());
        done.set_fencing_token(t.fencing_token());
        done.mutable_outputs()->set_output_path(t.output_path());
        done.mutable_outputs()->set_evaluation_report_id(t.evaluation_report_id());
        if (t.kind() == v1::STAGE_PUBLISH) {
          done.mutable_outputs()->set_artifact_path(t.output_path() + "/model");
        }
        v1::CompleteTaskResponse ok;
        grpc::ClientContext c2;
        {
          // The next stage becomes runnable during this call.
          std::lock_guard<std::mutex> lock(mu);
          ready_at[t.job_id()] = Clock::now();
        }
        grpc::Status st = stub->CompleteTask(&c2, done, &ok);
        if (!st.ok()) std::cerr << "complete failed: " << st.error_message() << "\n";
        ++tasks_done;
      }
    });
  }
  absl::SleepFor(absl::Seconds(1));  // let the workers register and start polling
  {
    auto stub = v1::JobService::NewStub(channel(1));
    const Clock::time_point start = Clock::now();
    for (int i = 0; i < dispatch_jobs; ++i) {
      std::this_thread::sleep_until(start + std::chrono::microseconds(
                                                static_cast<int64_t>(i * 1e6 / rate)));
      grpc::ClientContext ctx;
      with_tenant(ctx, i % 10);
      v1::Job job;
      // Latency counts from the call: a fast worker can lease the task
      // before SubmitConversion's response arrives here.
      const Clock::time_point sent = Clock::now();
      grpc::Status st = stub->SubmitConversion(&ctx, Request(submit_jobs + i), &job);
      if (!st.ok()) {
        std::cerr << "dispatch submit failed: " << st.error_message() << "\n";
        continue;
      }
      std::lock_guard<std::mutex> lock(mu);
      auto early = leased_first.find(job.job_id());
      if (early != leased_first.end()) {
        first_ms.push_back(Ms(early->second - sent));
      } else {
        ready_at[job.job_id()] = sent;
      }
    }
  }
  const Clock::time_point wait_until = Clock::now() + std::chrono::seconds(60);
  while (tasks_done < total_tasks && Clock::now() < wait_until) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  stop = true;
  for (auto& t : worker_threads) t.join();
  (*scheduler)->Shutdown();
  const Summary first = Summarize(first_ms), handoff = Summarize(handoff_ms);
  const int64_t dispatch_retries = linearize::scheduler::SqlConflictRetries() - accept_retries;
  std::cerr << "conflict retries: accept " << accept_retries << ", dispatch " << dispatch_retries
            << "\n";
  std::cerr << "dispatch: " << tasks_done << "/" << total_tasks << " tasks; first task p50 "
            << first.p50 << " ms p99 " << first.p99 << " ms; hand-off p50 " << handoff.p50
            << " ms p99 " << handoff.p99 << " ms\n";

  const std::string backend = store_url.rfind("postgres", 0) == 0 ? "postgresql" : "sqlite";
  const std::string json = absl::StrCat(
      "{\n  \"backend\": \"", backend, "\",\n  \"accept\": {\"jobs\": ", submit_ms.size(),
      ", \"errors\": ", errors.load(), ", \"clients\": ", submit_clients, ", \"seconds\": ",
      accept_seconds, ", \"jobs_per_second\": ", jobs_per_second,
      ", \"conflict_retries\": ", accept_retries, ", \"submit_latency\": ", Json(submit), "},\n  \"dispatch\": {\"workers\": ", workers,
      ", \"jobs\": ", dispatch_jobs, ", \"rate_jobs_per_second\": ", rate,
      ", \"tasks_completed\": ", tasks_done.load(), ", \"tasks_expected\": ", total_tasks,
      ", \"conflict_retries\": ", dispatch_retries, ", \"first_task_latency\": ", Json(first), ", \"stage_handoff_latency\": ", Json(handoff),
      "}\n}\n");
  std::cout << json;
  if (!json_path.empty()) std::ofstream(json_path) << json;
  std::error_code ec;
  fs::remove_all(dir, ec);
  return tasks_done == total_tasks && errors == 0 ? 0 : 1;
}
