// The job store's job side, on SQLite and PostgreSQL: creation and
// idempotency (also under concurrency), quotas, listing with filters and
// pages, cancellation, events, logs, durability across reopen, and schema
// migrations.
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "services/scheduler/postgres_database.h"
#include "services/scheduler/schema.h"
#include "services/scheduler/sqlite_database.h"
#include "tests/unit/scheduler/store_fixture.h"

namespace linearize::scheduler::testing {
namespace {

using ::testing::HasSubstr;

class JobStoreJobs : public StoreTest {};

TEST_P(JobStoreJobs, CreateThenGet) {
  NewJob j = MakeJob("acme", "", 0, /*blocks=*/2);
  j.job.mutable_labels()->insert({"team", "nlp"});
  v1::Job created = Create(j);
  EXPECT_EQ(created.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(created.stage(), v1::STAGE_UNSPECIFIED);
  EXPECT_EQ(created.status_message(), "waiting for a worker");
  ASSERT_EQ(created.stages_size(), 4);
  EXPECT_EQ(created.stages(0).stage(), v1::STAGE_ATTENTION_TRANSFER);
  EXPECT_EQ(created.stages(0).tasks_total(), 2);
  EXPECT_EQ(created.stages(0).state(), v1::STAGE_STATE_PENDING);
  EXPECT_EQ(created.create_time().seconds(), absl::ToUnixSeconds(clock_.Now()));

  v1::Job got = Get(created);
  EXPECT_EQ(got.job_id(), created.job_id());
  EXPECT_EQ(got.labels().at("team"), "nlp");
  EXPECT_EQ(got.spec().output_model_name(), j.job.spec().output_model_name());

  // Another tenant's job does not exist for it.
  absl::StatusOr<v1::Job> other = Store().GetJob("globex", created.job_id());
  EXPECT_EQ(other.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(other.status().message(), HasSubstr("job_id"));
}

TEST_P(JobStoreJobs, SkippedStagesAreMarked) {
  NewJob j = MakeJob("acme");
  j.tasks.erase(j.tasks.begin() + 2);  // no EVALUATE
  v1::Job created = Create(j);
  EXPECT_EQ(created.stages(2).stage(), v1::STAGE_EVALUATE);
  EXPECT_EQ(created.stages(2).state(), v1::STAGE_STATE_SKIPPED);
  EXPECT_TRUE(created.stages(2).has_end_time());
}

TEST_P(JobStoreJobs, RequestIdMakesCreateIdempotent) {
  NewJob j = MakeJob("acme", "req-1");
  absl::StatusOr<CreateJobResult> first = Store().CreateJob(j);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->created);

  NewJob again = MakeJob("acme", "req-1");  // same request bytes, another proposed id
  absl::StatusOr<CreateJobResult> second = Store().CreateJob(again);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->created);
  EXPECT_EQ(second->job.job_id(), first->job.job_id());

  NewJob different = MakeJob("acme", "req-1");
  different.request = "another request";
  absl::StatusOr<CreateJobResult> third = Store().CreateJob(different);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(third.status().message(), HasSubstr("request_id"));

  // Keys are per tenant.
  absl::StatusOr<CreateJobResult> other = Store().CreateJob(MakeJob("globex", "req-1"));
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_TRUE(other->created);
}

TEST_P(JobStoreJobs, ConcurrentCreatesWithRepeatedRequestIdsMakeEachJobOnce) {
  Store();
  constexpr int kThreads = 8, kPerThread = 25, kDistinct = 20;
  absl::Mutex mu;
  absl::flat_hash_map<std::string, std::string> job_of_request;
  int created = 0, failures = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string rid = absl::StrCat("req-", (t * kPerThread + i) % kDistinct);
        absl::StatusOr<CreateJobResult> r = store_->CreateJob(MakeJob("acme", rid));
        absl::MutexLock lock(&mu);
        if (!r.ok()) {
          ++failures;
          ADD_FAILURE() << r.status();
          continue;
        }
        created += r->created;
        auto [it, inserted] = job_of_request.emplace(rid, r->job.job_id());
        EXPECT_EQ(it->second, r->job.job_id()) << "request " << rid << " made two jobs";
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(created, kDistinct);
  v1::ListJobsRequest list;
  list.set_page_size(1000);
  absl::StatusOr<v1::ListJobsResponse> all = Store().ListJobs("acme", list);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->jobs_size(), kDistinct);
}

TEST_P(JobStoreJobs, QueuedQuotaPerTenant) {
  options_.max_queued_jobs_per_tenant = 2;
  Create(MakeJob("acme"));
  Create(MakeJob("acme"));
  absl::StatusOr<CreateJobResult> third = Store().CreateJob(MakeJob("acme"));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(third.status().message(), HasSubstr("queued"));
  EXPECT_TRUE(Store().CreateJob(MakeJob("globex")).ok());
}

TEST_P(JobStoreJobs, OutputModelNameIsUniquePerTenantUntilReleased) {
  NewJob a = MakeJob("acme");
  a.job.mutable_spec()->set_output_model_name("my-model");
  v1::Job job = Create(a);
  NewJob b = MakeJob("acme");
  b.job.mutable_spec()->set_output_model_name("my-model");
  absl::StatusOr<CreateJobResult> taken = Store().CreateJob(b);
  EXPECT_EQ(taken.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(taken.status().message(), HasSubstr("spec.output_model_name"));
  // Another tenant may use it; a cancelled job frees it.
  NewJob c = MakeJob("globex");
  c.job.mutable_spec()->set_output_model_name("my-model");
  EXPECT_TRUE(Store().CreateJob(c).ok());
  ASSERT_TRUE(Store().CancelJob("acme", job.job_id(), "").ok());
  EXPECT_TRUE(Store().CreateJob(b).ok());
}

TEST_P(JobStoreJobs, ListNewestFirstInPages) {
  std::vector<std::string> ids;
  for (int i = 0; i < 7; ++i) {
    ids.push_back(Create(MakeJob("acme")).job_id());
    clock_.Advance(absl::Seconds(1));
  }
  Create(MakeJob("globex"));
  v1::ListJobsRequest req;
  req.set_page_size(3);
  std::vector<std::string> seen;
  int pages = 0;
  for (;;) {
    absl::StatusOr<v1::ListJobsResponse> page = Store().ListJobs("acme", req);
    ASSERT_TRUE(page.ok()) << page.status();
    ++pages;
    EXPECT_LE(page->jobs_size(), 3);
    for (const v1::Job& j : page->jobs()) seen.push_back(j.job_id());
    if (page->next_page_token().empty()) break;
    req.set_page_token(page->next_page_token());
  }
  EXPECT_EQ(pages, 3);
  std::vector<std::string> newest_first(ids.rbegin(), ids.rend());
  EXPECT_EQ(seen, newest_first);
}

TEST_P(JobStoreJobs, ListFilters) {
  NewJob a = MakeJob("acme");
  a.job.mutable_labels()->insert({"team", "nlp"});
  v1::Job ja = Create(a);
  clock_.Advance(absl::Seconds(10));
  NewJob b = MakeJob("acme");
  b.job.mutable_spec()->mutable_recipe()->set_kind(v1::RECIPE_KIND_LIZARD);
  b.job.mutable_labels()->insert({"team", "vision"});
  v1::Job jb = Create(b);
  ASSERT_TRUE(Store().CancelJob("acme", jb.job_id(), "").ok());

  auto ids = [&](const v1::ListJobsRequest& req) {
    std::vector<std::string> out;
    absl::StatusOr<v1::ListJobsResponse> r = Store().ListJobs("acme", req);
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) {
      for (const v1::Job& j : r->jobs()) out.push_back(j.job_id());
    }
    return out;
  };
  v1::ListJobsRequest by_state;
  by_state.add_states(v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(ids(by_state), std::vector<std::string>{jb.job_id()});
  v1::ListJobsRequest by_recipe;
  by_recipe.add_recipes(v1::RECIPE_KIND_LOLCATS);
  EXPECT_EQ(ids(by_recipe), std::vector<std::string>{ja.job_id()});
  v1::ListJobsRequest by_label;
  (*by_label.mutable_labels())["team"] = "vision";
  EXPECT_EQ(ids(by_label), std::vector<std::string>{jb.job_id()});
  (*by_label.mutable_labels())["other"] = "x";
  EXPECT_TRUE(ids(by_label).empty());
  v1::ListJobsRequest by_time;
  by_time.mutable_create_time()->mutable_start_time()->set_seconds(ja.create_time().seconds() + 5);
  EXPECT_EQ(ids(by_time), std::vector<std::string>{jb.job_id()});
  by_time.mutable_create_time()->clear_start_time();
  by_time.mutable_create_time()->mutable_end_time()->set_seconds(ja.create_time().seconds() + 5);
  EXPECT_EQ(ids(by_time), std::vector<std::string>{ja.job_id()});
}

TEST_P(JobStoreJobs, ListRejectsBadRequests) {
  Create(MakeJob("acme"));
  Create(MakeJob("acme"));
  auto code_and_message = [&](const v1::ListJobsRequest& req) {
    absl::StatusOr<v1::ListJobsResponse> r = Store().ListJobs("acme", req);
    return std::make_pair(r.status().code(), std::string(r.status().message()));
  };
  v1::ListJobsRequest neg;
  neg.set_page_size(-1);
  EXPECT_EQ(code_and_message(neg).first, absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(code_and_message(neg).second, HasSubstr("page_size"));

  v1::ListJobsRequest unspecified;
  unspecified.add_states(v1::JOB_STATE_QUEUED);
  unspecified.add_states(v1::JOB_STATE_UNSPECIFIED);
  EXPECT_THAT(code_and_message(unspecified).second, HasSubstr("states[1]"));

  v1::ListJobsRequest bad_label;
  (*bad_label.mutable_labels())["Bad Key"] = "x";
  EXPECT_THAT(code_and_message(bad_label).second, HasSubstr("labels"));

  v1::ListJobsRequest garbage;
  garbage.set_page_token("not-a-token!");
  EXPECT_EQ(code_and_message(garbage).first, absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(code_and_message(garbage).second, HasSubstr("page_token"));

  // A token used with other filters.
  v1::ListJobsRequest first;
  first.set_page_size(1);
  absl::StatusOr<v1::ListJobsResponse> page = Store().ListJobs("acme", first);
  ASSERT_TRUE(page.ok());
  ASSERT_FALSE(page->next_page_token().empty());
  v1::ListJobsRequest other = first;
  other.set_page_token(page->next_page_token());
  other.add_states(v1::JOB_STATE_QUEUED);
  EXPECT_EQ(code_and_message(other).first, absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(code_and_message(other).second, HasSubstr("different filters"));

  v1::ListJobsRequest backwards;
  backwards.mutable_create_time()->mutable_start_time()->set_seconds(100);
  backwards.mutable_create_time()->mutable_end_time()->set_seconds(50);
  EXPECT_THAT(code_and_message(backwards).second, HasSubstr("create_time.end_time"));
}

TEST_P(JobStoreJobs, CancelTransitions) {
  v1::Job job = Create(MakeJob("acme"));
  absl::StatusOr<v1::Job> other = Store().CancelJob("globex", job.job_id(), "");
  EXPECT_EQ(other.status().code(), absl::StatusCode::kNotFound);

  absl::StatusOr<v1::Job> cancelled = Store().CancelJob("acme", job.job_id(), "not needed");
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
  EXPECT_TRUE(cancelled->has_end_time());
  EXPECT_EQ(cancelled->status_message(), "cancelled: not needed");
  for (const v1::StageSummary& s : cancelled->stages()) {
    EXPECT_EQ(s.state(), v1::STAGE_STATE_CANCELLED) << v1::Stage_Name(s.stage());
  }
  // Again: unchanged, OK.
  absl::StatusOr<v1::Job> again = Store().CancelJob("acme", job.job_id(), "");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->update_time().seconds(), cancelled->update_time().seconds());
  // Its tasks are gone from the queue.
  std::string worker = Register();
  EXPECT_FALSE(Lease(worker).has_value());
}

TEST_P(JobStoreJobs, CancelOfFinishedJobIsFailedPrecondition) {
  v1::Job job = Create(MakeJob("acme"));
  std::string worker = Register();
  for (int i = 0; i < 4; ++i) {
    std::optional<v1::Task> t = Lease(worker);
    ASSERT_TRUE(t.has_value());
    ASSERT_TRUE(Complete(*t).ok());
  }
  ASSERT_EQ(Get(job).state(), v1::JOB_STATE_SUCCEEDED);
  absl::StatusOr<v1::Job> r = Store().CancelJob("acme", job.job_id(), "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("SUCCEEDED"));
}

TEST_P(JobStoreJobs, EventsFollowTheSnapshotInOrder) {
  v1::Job job = Create(MakeJob("acme"));
  absl::StatusOr<JobSnapshot> snap = Store().SnapshotJob("acme", job.job_id());
  ASSERT_TRUE(snap.ok()) << snap.status();
  EXPECT_EQ(snap->job.state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(Store().SnapshotJob("globex", job.job_id()).status().code(),
            absl::StatusCode::kNotFound);

  std::string worker = Register();
  std::optional<v1::Task> t = Lease(worker);
  ASSERT_TRUE(t.has_value());
  Beat(*t, "", 5);
  absl::StatusOr<std::vector<StoredEvent>> events =
      Store().ReadJobEvents(job.job_id(), snap->event_cursor, 100);
  ASSERT_TRUE(events.ok()) << events.status();
  ASSERT_EQ(events->size(), 3u);  // RUNNING, stage 1 RUNNING, progress
  const v1::JobEvent& running = (*events)[0].event;
  ASSERT_TRUE(running.has_state_change());
  EXPECT_EQ(running.state_change().previous_state(), v1::JOB_STATE_QUEUED);
  EXPECT_EQ(running.state_change().state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(running.state_change().job().state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(running.sequence(), 2);
  const v1::JobEvent& stage = (*events)[1].event;
  ASSERT_TRUE(stage.has_stage_change());
  EXPECT_EQ(stage.stage_change().stage().state(), v1::STAGE_STATE_RUNNING);
  EXPECT_EQ(stage.sequence(), 3);
  const v1::JobEvent& progress = (*events)[2].event;
  ASSERT_TRUE(progress.has_progress());
  EXPECT_EQ(progress.progress().step(), 5);
  EXPECT_EQ(progress.sequence(), 3);  // progress repeats the last sequence
  // Reading on from the last cursor gives nothing new.
  absl::StatusOr<std::vector<StoredEvent>> none =
      Store().ReadJobEvents(job.job_id(), events->back().cursor, 100);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_P(JobStoreJobs, LogsArePagedFilteredAndEndWhenTheJobEnds) {
  v1::Job job = Create(MakeJob("acme"));
  std::string worker = Register();
  std::optional<v1::Task> t = Lease(worker);
  ASSERT_TRUE(t.has_value());
  v1::HeartbeatRequest hb;
  hb.set_lease_id(t->lease_id());
  hb.set_fencing_token(t->fencing_token());
  for (int i = 0; i < 5; ++i) {
    v1::LogLine* l = hb.add_logs();
    l->set_severity(i % 2 ? v1::LOG_SEVERITY_WARNING : v1::LOG_SEVERITY_INFO);
    l->set_message(absl::StrCat("line ", i));
  }
  v1::LogLine* long_line = hb.add_logs();
  long_line->set_severity(v1::LOG_SEVERITY_DEBUG);
  long_line->set_message(std::string(5000, 'x'));
  ASSERT_TRUE(Store().Heartbeat(hb).ok());

  v1::GetJobLogsRequest req;
  req.set_job_id(job.job_id());
  req.set_task_id(t->task_id());
  req.set_page_size(4);
  absl::StatusOr<v1::GetJobLogsResponse> page = Store().GetJobLogs("acme", req);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->lines_size(), 4);
  // The scheduler's own lease line comes first, then the worker's.
  EXPECT_THAT(page->lines(0).message(), HasSubstr("leased to worker"));
  EXPECT_EQ(page->lines(1).message(), "line 0");
  EXPECT_EQ(page->lines(1).task_id(), t->task_id());
  EXPECT_EQ(page->lines(1).stage(), v1::STAGE_ATTENTION_TRANSFER);
  ASSERT_FALSE(page->next_page_token().empty());
  req.set_page_token(page->next_page_token());
  page = Store().GetJobLogs("acme", req);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->lines_size(), 3);
  EXPECT_EQ(page->lines(2).message().size(), 4096u);
  EXPECT_THAT(page->lines(2).message(), ::testing::EndsWith("..."));
  // Running job: always a token to poll with, even after the last line.
  EXPECT_FALSE(page->next_page_token().empty());

  v1::GetJobLogsRequest warnings;
  warnings.set_job_id(job.job_id());
  warnings.set_min_severity(v1::LOG_SEVERITY_WARNING);
  page = Store().GetJobLogs("acme", warnings);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->lines_size(), 2);

  ASSERT_TRUE(Store().CancelJob("acme", job.job_id(), "done").ok());
  v1::GetJobLogsRequest all;
  all.set_job_id(job.job_id());
  page = Store().GetJobLogs("acme", all);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->next_page_token().empty()) << "a terminal job's last page ends the logs";
  EXPECT_THAT(page->lines(page->lines_size() - 1).message(), HasSubstr("cancelled: done"));

  all.set_page_token(page->next_page_token());
  warnings.set_page_token("garbage");
  EXPECT_EQ(Store().GetJobLogs("acme", warnings).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Store().GetJobLogs("globex", all).status().code(), absl::StatusCode::kNotFound);
}

TEST_P(JobStoreJobs, EverythingSurvivesReopening) {
  v1::Job job = Create(MakeJob("acme", "keep-me"));
  std::string worker = Register();
  std::optional<v1::Task> t = Lease(worker);
  ASSERT_TRUE(t.has_value());
  Beat(*t, t->output_path() + "/ckpt-1", 3);
  Reopen();
  v1::Job after = Get(job);
  EXPECT_EQ(after.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(after.progress().step(), 3);
  // The lease is still good, and the request id still deduplicates.
  EXPECT_EQ(Beat(*t).action(), v1::HEARTBEAT_ACTION_CONTINUE);
  absl::StatusOr<CreateJobResult> again = Store().CreateJob(MakeJob("acme", "keep-me"));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->created);
  EXPECT_EQ(again->job.job_id(), job.job_id());
}

// Opens the raw database behind the fixture's URL.
std::unique_ptr<SqlDatabase> RawDatabase(const std::string& url) {
  absl::StatusOr<std::unique_ptr<SqlDatabase>> db =
      url.rfind("postgresql://", 0) == 0 ? OpenPostgresDatabase(url)
                                         : OpenSqliteDatabase(url.substr(9));
  EXPECT_TRUE(db.ok()) << db.status();
  return db.ok() ? std::move(*db) : nullptr;
}

TEST_P(JobStoreJobs, OlderSchemaIsMigrated) {
  ASSERT_GE(LatestSchemaVersion(), 2);
  options_.schema_version = 1;
  v1::Job job = Create(MakeJob("acme"));  // written under schema version 1
  Reopen();
  {
    std::unique_ptr<SqlDatabase> raw = RawDatabase(url_);
    ASSERT_NE(raw, nullptr);
    absl::StatusOr<int> v = SchemaVersion(*raw);
    ASSERT_TRUE(v.ok());
    EXPECT_EQ(*v, 1);
  }
  options_.schema_version = 0;
  EXPECT_EQ(Get(job).job_id(), job.job_id());  // opening migrates
  std::unique_ptr<SqlDatabase> raw = RawDatabase(url_);
  ASSERT_NE(raw, nullptr);
  absl::StatusOr<int> v = SchemaVersion(*raw);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, LatestSchemaVersion());
  // Version 2's indexes exist.
  int64_t indexes = 0;
  ASSERT_TRUE(raw->Transact([&](SqlTransaction& tx) -> absl::Status {
                   absl::StatusOr<std::vector<SqlRow>> r = tx.Query(
                       tx.dialect() == SqlDialect::kPostgres
                           ? "SELECT COUNT(*) FROM pg_indexes WHERE indexname = 'tasks_runnable' "
                             "AND schemaname = current_schema()"
                           : "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND "
                             "name = 'tasks_runnable'",
                       {});
                   if (!r.ok()) return r.status();
                   indexes = (*r)[0].Int(0);
                   return absl::OkStatus();
                 }).ok());
  EXPECT_EQ(indexes, 1);
  // The job written before the migration still works end to end.
  std::string worker = Register();
  EXPECT_TRUE(Lease(worker).has_value());
}

TEST_P(JobStoreJobs, NewerSchemaIsRefused) {
  Store();
  Reopen();
  std::unique_ptr<SqlDatabase> raw = RawDatabase(url_);
  ASSERT_NE(raw, nullptr);
  ASSERT_TRUE(raw->Transact([](SqlTransaction& tx) {
                   return tx.Exec("UPDATE schema_version SET version = 99", {}).status();
                 }).ok());
  absl::StatusOr<std::unique_ptr<JobStore>> s = OpenJobStore(url_, options_);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.status().message(), HasSubstr("schema version 99"));
}

LINEARIZE_STORE_BACKENDS(JobStoreJobs);

TEST(OpenJobStore, RejectsUnknownSchemes) {
  absl::StatusOr<std::unique_ptr<JobStore>> s = OpenJobStore("mysql://host/db");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.status().message(), HasSubstr("mysql://host/db"));
}

TEST(OpenJobStore, UnreachablePostgresIsUnavailable) {
  absl::StatusOr<std::unique_ptr<JobStore>> s =
      OpenJobStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2");
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(s.status().message(), HasSubstr("127.0.0.1"));
}

TEST(PostgresPlaceholders, NumbersMarksOutsideLiterals) {
  EXPECT_EQ(PostgresPlaceholders("SELECT ? WHERE a = '?' AND b = ?"),
            "SELECT $1 WHERE a = '?' AND b = $2");
}

}  // namespace
}  // namespace linearize::scheduler::testing
