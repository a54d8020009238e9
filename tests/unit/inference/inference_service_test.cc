// InferenceService over a real loopback gRPC server on tiny checkpoints:
// sessions that continue across calls, forks, snapshots across a server
// restart, spilling under a tiny memory budget, persistence, concurrent
// callers on one session, cancellation, chat streams and bad input.
#include "services/inference/inference_service.h"

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <map>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "services/common/server.h"
#include "tests/unit/inference/tiny_models.h"

namespace linearize::inference {
namespace {

namespace v1 = ::linearize::v1;

// One server process's worth of objects; Stop() is a graceful shutdown.
struct Server {
  Server(const std::string& root, const std::string& state_dir, int64_t budget) {
    SessionStore::Options o;
    o.dir = state_dir;
    o.memory_budget_bytes = budget;
    o.on_transition = [this](Lifecycle from, Lifecycle to) {
      absl::MutexLock lock(&transitions_mu);
      ++transitions[std::string(LifecycleName(from)) + "->" + std::string(LifecycleName(to))];
    };
    models = std::make_unique<ModelRegistry>(runtime::EngineOptions{});
    sessions = std::make_unique<SessionStore>(o, *models);
    EXPECT_TRUE(sessions->Open().ok());
    ServiceOptions so;
    so.artifact_root = root;
    so.max_prompt_bytes = 4096;
    service = std::make_unique<InferenceServiceImpl>(so, *models, *sessions);
    server::ServerOptions options;  // auth off: the tenant is x-linearize-tenant
    options.max_receive_message_bytes = 64 << 20;
    auto started = server::Server::Start(options, {service.get()},
                                         std::make_shared<metrics::Registry>());
    EXPECT_TRUE(started.ok()) << started.status();
    server = std::move(*started);
    channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server->port()),
                                  grpc::InsecureChannelCredentials());
    stub = v1::InferenceService::NewStub(channel);
  }
  void Stop() {
    service->Drain();
    server->Shutdown(absl::Seconds(5));
    EXPECT_TRUE(sessions->Persist(true).ok());
  }
  int Transitions(const std::string& from_to) {
    absl::MutexLock lock(&transitions_mu);
    return transitions[from_to];
  }
  absl::Mutex transitions_mu;
  std::map<std::string, int> transitions;  // "IDLE->ACTIVE" -> count
  std::unique_ptr<ModelRegistry> models;
  std::unique_ptr<SessionStore> sessions;
  std::unique_ptr<InferenceServiceImpl> service;
  std::unique_ptr<server::Server> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<v1::InferenceService::Stub> stub;
};

struct Generated {
  grpc::Status status;
  std::string text;
  std::vector<int32_t> ids;
  v1::GenerationEnd end;
};

class InferenceServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = testing::TempDir("serve");
    ASSERT_EQ(::mkdir((root_ + "/lolcats").c_str(), 0700), 0);
    ASSERT_EQ(::mkdir((root_ + "/softmax").c_str(), 0700), 0);
    testing::WriteTinyModel(root_ + "/lolcats", model::Recipe::kLolcats);
    testing::WriteTinyModel(root_ + "/softmax", std::nullopt);
    state_dir_ = root_ + "/state";
  }
  void TearDown() override { testing::RemoveTree(root_); }

  std::unique_ptr<Server> Start(int64_t budget = 1LL << 30) {
    auto s = std::make_unique<Server>(root_, state_dir_, budget);
    for (const char* name : {"lolcats", "softmax"}) {
      v1::LoadModelRequest req;
      req.mutable_model()->set_artifact_path(name);
      v1::ModelInfo info;
      grpc::ClientContext ctx;
      grpc::Status st = s->stub->LoadModel(&ctx, req, &info);
      EXPECT_TRUE(st.ok()) << st.error_message();
      EXPECT_EQ(info.name(), name);
    }
    return s;
  }

  static v1::Session Create(Server& s, const std::string& model, const std::string& system = "") {
    v1::CreateSessionRequest req;
    req.set_model_name(model);
    req.set_system_prompt(system);
    v1::Session out;
    grpc::ClientContext ctx;
    grpc::Status st = s.stub->CreateSession(&ctx, req, &out);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return out;
  }

  static Generated Gen(Server& s, const std::string& session, const std::string& prompt,
                       int max_tokens = 6, bool chat = false) {
    v1::GenerateRequest req;
    req.set_session_id(session);
    if (chat) {
      auto* m = req.mutable_messages()->add_messages();
      m->set_role(v1::CHAT_ROLE_USER);
      m->set_content(prompt);
    } else if (!prompt.empty()) {
      req.set_prompt(prompt);
    }
    req.mutable_sampling()->set_temperature(0);
    req.mutable_sampling()->set_max_tokens(max_tokens);
    req.mutable_sampling()->set_ignore_eos(true);
    return Run(s, req);
  }

  static Generated GenIds(Server& s, const std::string& session, const std::vector<int32_t>& ids) {
    v1::GenerateRequest req;
    req.set_session_id(session);
    req.mutable_token_ids()->mutable_ids()->Add(ids.begin(), ids.end());
    req.mutable_sampling()->set_temperature(0);
    req.mutable_sampling()->set_max_tokens(6);
    req.mutable_sampling()->set_ignore_eos(true);
    return Run(s, req);
  }

  // Streams one Generate call to its end.
  static Generated Run(Server& s, const v1::GenerateRequest& req) {
    grpc::ClientContext ctx;
    auto reader = s.stub->Generate(&ctx, req);
    Generated g;
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {
      if (msg.has_delta()) {
        g.text += msg.delta().text();
        g.ids.insert(g.ids.end(), msg.delta().token_ids().begin(), msg.delta().token_ids().end());
      } else {
        g.end = msg.end();
      }
    }
    g.status = reader->Finish();
    return g;
  }

  static v1::Session Get(Server& s, const std::string& id) {
    v1::GetSessionRequest req;
    req.set_session_id(id);
    v1::Session out;
    grpc::ClientContext ctx;
    EXPECT_TRUE(s.stub->GetSession(&ctx, req, &out).ok());
    return out;
  }

  std::string root_, state_dir_;
};

TEST_F(InferenceServiceTest, SessionContinuesAcrossCallsLikeOneCall) {
  auto s = Start();
  for (const char* model : {"lolcats", "softmax"}) {
    v1::Session a = Create(*s, model);
    const std::vector<std::vector<int32_t>> parts = {{40, 41, 42, 43, 44, 45}, {900, 901}, {7, 1300, 8}};
    std::vector<int32_t> transcript;
    Generated last, before_last;
    for (const auto& part : parts) {
      before_last = last;
      last = GenIds(*s, a.session_id(), part);
      ASSERT_TRUE(last.status.ok()) << last.status.error_message();
      EXPECT_EQ(last.end.finish_reason(), v1::FINISH_REASON_LENGTH);
      EXPECT_EQ(last.ids.size(), 6u);
      transcript.insert(transcript.end(), part.begin(), part.end());
      transcript.insert(transcript.end(), last.ids.begin(), last.ids.end());
    }
    EXPECT_EQ(last.end.usage().cached_tokens(), before_last.end.tokens_seen());
    EXPECT_EQ(last.end.usage().prompt_tokens(), 3);
    // The same tokens in one call give the same last output.
    transcript.resize(transcript.size() - last.ids.size());
    v1::Session b = Create(*s, model);
    Generated once = GenIds(*s, b.session_id(), transcript);
    ASSERT_TRUE(once.status.ok());
    EXPECT_EQ(once.ids, last.ids) << model;
    EXPECT_EQ(Get(*s, a.session_id()).tokens_seen(), last.end.tokens_seen());
    EXPECT_EQ(Get(*s, a.session_id()).turns(), 3);
  }
}

TEST_F(InferenceServiceTest, ForkedBranchesContinueIndependently) {
  auto s = Start();
  v1::Session a = Create(*s, "lolcats", "You are terse.");
  ASSERT_TRUE(Gen(*s, a.session_id(), "Tell me", 4).status.ok());
  v1::ForkSessionRequest fork;
  fork.set_session_id(a.session_id());
  v1::Session b;
  grpc::ClientContext ctx;
  ASSERT_TRUE(s->stub->ForkSession(&ctx, fork, &b).ok());
  EXPECT_EQ(b.parent_session_id(), a.session_id());
  EXPECT_EQ(b.tokens_seen(), Get(*s, a.session_id()).tokens_seen());
  // Branch b takes another path; then a continues as if b never existed.
  Generated other = Gen(*s, b.session_id(), " something else entirely", 5);
  Generated ga = Gen(*s, a.session_id(), " a story", 5);
  Generated gb = Gen(*s, b.session_id(), " a story", 5);
  v1::ForkSessionRequest fork2;
  fork2.set_session_id(a.session_id());
  ASSERT_TRUE(other.status.ok() && ga.status.ok() && gb.status.ok());
  EXPECT_NE(Get(*s, a.session_id()).tokens_seen(), Get(*s, b.session_id()).tokens_seen());
  // A reference session fed a's transcript gives a's output.
  v1::Session ref = Create(*s, "lolcats", "You are terse.");
  Generated r1 = Gen(*s, ref.session_id(), "Tell me", 4);
  Generated r2 = Gen(*s, ref.session_id(), " a story", 5);
  EXPECT_EQ(r2.ids, ga.ids);
}

TEST_F(InferenceServiceTest, SnapshotRestoresAfterARestart) {
  v1::SessionSnapshot snap;
  Generated expected;
  {
    auto s = Start();
    v1::Session a = Create(*s, "lolcats");
    ASSERT_TRUE(Gen(*s, a.session_id(), "The first part").status.ok());
    v1::SnapshotSessionRequest req;
    req.set_session_id(a.session_id());
    grpc::ClientContext ctx;
    ASSERT_TRUE(s->stub->SnapshotSession(&ctx, req, &snap).ok());
    EXPECT_EQ(snap.format_version(), 1u);
    EXPECT_EQ(snap.checksum().substr(0, 7), "sha256:");
    EXPECT_EQ(snap.tokens_seen(), Get(*s, a.session_id()).tokens_seen());
    expected = Gen(*s, a.session_id(), " continues", 8);
    s->Stop();
  }
  auto s = Start();
  v1::RestoreSessionRequest req;
  *req.mutable_snapshot() = snap;
  v1::Session restored;
  grpc::ClientContext ctx;
  grpc::Status st = s->stub->RestoreSession(&ctx, req, &restored);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(restored.tokens_seen(), snap.tokens_seen());
  Generated got = Gen(*s, restored.session_id(), " continues", 8);
  EXPECT_EQ(got.ids, expected.ids);

  // Corrupt or foreign snapshots are refused; the server keeps serving.
  v1::RestoreSessionRequest bad = req;
  std::string data = bad.snapshot().data();
  data[data.size() / 3] ^= 1;
  bad.mutable_snapshot()->set_data(data);
  grpc::ClientContext c2;
  EXPECT_EQ(s->stub->RestoreSession(&c2, bad, &restored).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  bad.mutable_snapshot()->clear_checksum();
  grpc::ClientContext c3;
  EXPECT_EQ(s->stub->RestoreSession(&c3, bad, &restored).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  v1::RestoreSessionRequest foreign = req;
  foreign.set_model_name("softmax");
  grpc::ClientContext c4;
  EXPECT_EQ(s->stub->RestoreSession(&c4, foreign, &restored).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(Gen(*s, Create(*s, "lolcats").session_id(), "still serving").status.ok());
}

TEST_F(InferenceServiceTest, SpillsUnderATinyBudgetAndContinuesIdentically) {
  // Reference outputs with room for everyone.
  std::vector<std::vector<int32_t>> expected;
  {
    auto s = Start();
    std::vector<std::string> ids;
    for (int i = 0; i < 3; ++i) ids.push_back(Create(*s, "lolcats").session_id());
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < 3; ++i) {
        expected.push_back(Gen(*s, ids[i], "turn " + std::to_string(round * 3 + i)).ids);
      }
    }
  }
  testing::RemoveTree(state_dir_);
  auto s = Start();
  const int64_t one = s->models->Find("lolcats")->state_bytes;
  s = nullptr;
  const int64_t logits = 1536 * 4;
  ASSERT_GT(one, logits + 1024);
  s = Start(one + logits + 1024);  // room for one resident session
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) ids.push_back(Create(*s, "lolcats").session_id());
  EXPECT_EQ(Get(*s, ids[0]).state(), v1::SESSION_STATE_SPILLED);
  std::vector<std::vector<int32_t>> got;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 3; ++i) {
      Generated g = Gen(*s, ids[i], "turn " + std::to_string(round * 3 + i));
      ASSERT_TRUE(g.status.ok()) << g.status.error_message();
      got.push_back(g.ids);
    }
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(Get(*s, ids[2]).state(), v1::SESSION_STATE_IDLE);
  EXPECT_EQ(Get(*s, ids[0]).state(), v1::SESSION_STATE_SPILLED);
  // Every lifecycle change was reported (the server counts them in
  // linearize_inference_session_transitions_total): each session was
  // created, each generation made one resident (one slot: always from
  // SPILLED after the first) and left it IDLE, and each use spilled another.
  EXPECT_EQ(s->Transitions("CREATED->IDLE"), 3);
  EXPECT_EQ(s->Transitions("IDLE->ACTIVE") + s->Transitions("SPILLED->ACTIVE"), 6);
  EXPECT_GE(s->Transitions("SPILLED->ACTIVE"), 5);
  EXPECT_EQ(s->Transitions("ACTIVE->IDLE"), 6);
  EXPECT_GE(s->Transitions("IDLE->SPILLED"), 7);
}

TEST_F(InferenceServiceTest, SessionsSurviveARestart) {
  std::string id;
  Generated expected;
  {
    auto s = Start();
    id = Create(*s, "lolcats").session_id();
    ASSERT_TRUE(Gen(*s, id, "Remember this").status.ok());
    v1::ForkSessionRequest fork;
    fork.set_session_id(id);
    v1::Session copy;
    grpc::ClientContext ctx;
    ASSERT_TRUE(s->stub->ForkSession(&ctx, fork, &copy).ok());
    expected = Gen(*s, copy.session_id(), " next", 8);
    s->Stop();
  }
  auto s = Start();
  EXPECT_EQ(Get(*s, id).state(), v1::SESSION_STATE_SPILLED);
  Generated got = Gen(*s, id, " next", 8);
  ASSERT_TRUE(got.status.ok()) << got.status.error_message();
  EXPECT_EQ(got.ids, expected.ids);
}

TEST_F(InferenceServiceTest, ConcurrentCallersNeverCorruptASession) {
  auto s = Start();
  const std::string id = Create(*s, "lolcats").session_id();
  std::atomic<int64_t> fed{0};
  std::atomic<int> ok{0}, busy{0}, other{0};
  auto hammer = [&] {
    for (int i = 0; i < 8; ++i) {
      Generated g = Gen(*s, id, "x y", 3);
      if (g.status.ok()) {
        ++ok;
        fed += g.end.usage().prompt_tokens() + g.end.usage().completion_tokens();
      } else if (g.status.error_code() == grpc::StatusCode::FAILED_PRECONDITION &&
                 g.status.error_message().find("ACTIVE") != std::string::npos) {
        ++busy;
      } else {
        ++other;
      }
    }
  };
  std::thread t1(hammer), t2(hammer);
  t1.join();
  t2.join();
  EXPECT_EQ(other.load(), 0);
  EXPECT_EQ(ok.load() + busy.load(), 16);
  EXPECT_GE(ok.load(), 1);  // how the two interleave is up to the scheduler
  EXPECT_EQ(Get(*s, id).tokens_seen(), fed.load());
  EXPECT_EQ(Get(*s, id).turns(), ok.load());
}

TEST_F(InferenceServiceTest, CancelledStreamFreesTheSession) {
  auto s = Start();
  const std::string id = Create(*s, "lolcats").session_id();
  v1::GenerateRequest req;
  req.set_session_id(id);
  req.set_prompt("go on forever");
  req.mutable_sampling()->set_max_tokens(100000);
  req.mutable_sampling()->set_ignore_eos(true);
  grpc::ClientContext ctx;
  auto reader = s->stub->Generate(&ctx, req);
  v1::GenerateResponse msg;
  int deltas = 0;
  while (deltas < 3 && reader->Read(&msg)) ++deltas;
  ctx.TryCancel();
  while (reader->Read(&msg)) {}
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // Within a step the session is IDLE again and usable.
  for (int i = 0; i < 100 && Get(*s, id).state() == v1::SESSION_STATE_ACTIVE; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(Get(*s, id).state(), v1::SESSION_STATE_IDLE);
  EXPECT_LT(Get(*s, id).tokens_seen(), 100000);
  EXPECT_TRUE(Gen(*s, id, " again").status.ok());
}

TEST_F(InferenceServiceTest, ChatStreamMatchesGenerateWithMessages) {
  auto s = Start();
  const std::string ref = Create(*s, "lolcats").session_id();
  Generated r1 = Gen(*s, ref, "Hi", 5, /*chat=*/true);
  Generated r2 = Gen(*s, ref, "More", 5, /*chat=*/true);

  grpc::ClientContext ctx;
  auto stream = s->stub->Chat(&ctx);
  v1::ChatRequest start;
  start.mutable_start()->mutable_create_session()->set_model_name("lolcats");
  start.mutable_start()->mutable_sampling()->set_temperature(0);
  start.mutable_start()->mutable_sampling()->set_max_tokens(5);
  start.mutable_start()->mutable_sampling()->set_ignore_eos(true);
  start.mutable_start()->set_delete_on_close(true);
  ASSERT_TRUE(stream->Write(start));
  for (const char* text : {"Hi", "More"}) {
    v1::ChatRequest in;
    in.mutable_input()->set_text(text);
    ASSERT_TRUE(stream->Write(in));
  }
  stream->WritesDone();
  v1::ChatResponse resp;
  std::map<int, std::vector<int32_t>> ids;
  std::string session;
  int ends = 0;
  while (stream->Read(&resp)) {
    if (resp.has_started()) session = resp.started().session_id();
    if (resp.has_delta()) {
      ids[resp.turn()].insert(ids[resp.turn()].end(), resp.delta().token_ids().begin(),
                              resp.delta().token_ids().end());
    }
    if (resp.has_end()) ++ends;
  }
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(ends, 2);
  EXPECT_EQ(ids[1], r1.ids);
  EXPECT_EQ(ids[2], r2.ids);
  EXPECT_EQ(Get(*s, session).state(), v1::SESSION_STATE_DELETED);
}

TEST_F(InferenceServiceTest, BadInputGetsTheRightCodeAndNamesTheField) {
  auto s = Start();
  const std::string id = Create(*s, "lolcats").session_id();
  EXPECT_EQ(Gen(*s, "s-nope", "x").status.error_code(), grpc::StatusCode::NOT_FOUND);
  {
    v1::GenerateRequest req;
    req.set_session_id(id);
    req.set_prompt("x");
    req.mutable_sampling()->set_temperature(11);
    grpc::ClientContext ctx;
    auto reader = s->stub->Generate(&ctx, req);
    v1::GenerateResponse msg;
    while (reader->Read(&msg)) {}
    grpc::Status st = reader->Finish();
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("sampling.temperature"), std::string::npos);
  }
  Generated big = Gen(*s, id, std::string(5000, 'a'));
  EXPECT_EQ(big.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(big.status.error_message().find("4096"), std::string::npos);
  {
    v1::LoadModelRequest req;
    req.mutable_model()->set_artifact_path("../outside");
    v1::ModelInfo info;
    grpc::ClientContext ctx;
    grpc::Status st = s->stub->LoadModel(&ctx, req, &info);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(st.error_message().find("model.artifact_path"), std::string::npos);
  }
  {
    v1::CreateSessionRequest req;
    req.set_model_name("no-such-model");
    v1::Session out;
    grpc::ClientContext ctx;
    EXPECT_EQ(s->stub->CreateSession(&ctx, req, &out).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  // A deleted session leaves a tombstone.
  v1::DeleteSessionRequest del;
  del.set_session_id(id);
  v1::DeleteSessionResponse dr;
  grpc::ClientContext ctx;
  ASSERT_TRUE(s->stub->DeleteSession(&ctx, del, &dr).ok());
  EXPECT_EQ(Get(*s, id).state(), v1::SESSION_STATE_DELETED);
  EXPECT_EQ(Gen(*s, id, "x").status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(InferenceServiceTest, ATenantSeesOnlyItsOwnSessions) {
  auto s = Start();
  v1::CreateSessionRequest req;
  req.set_model_name("lolcats");
  v1::Session mine;
  grpc::ClientContext c1;
  c1.AddMetadata("x-linearize-tenant", "alice");
  ASSERT_TRUE(s->stub->CreateSession(&c1, req, &mine).ok());
  EXPECT_EQ(mine.tenant(), "alice");
  v1::GetSessionRequest get;
  get.set_session_id(mine.session_id());
  v1::Session out;
  grpc::ClientContext c2;
  c2.AddMetadata("x-linearize-tenant", "bob");
  EXPECT_EQ(s->stub->GetSession(&c2, get, &out).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::DeleteSessionRequest del;
  del.set_session_id(mine.session_id());
  v1::DeleteSessionResponse dr;
  grpc::ClientContext c3;
  c3.AddMetadata("x-linearize-tenant", "bob");
  EXPECT_EQ(s->stub->DeleteSession(&c3, del, &dr).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::ListSessionsRequest list;
  v1::ListSessionsResponse listed;
  grpc::ClientContext c4;
  c4.AddMetadata("x-linearize-tenant", "bob");
  ASSERT_TRUE(s->stub->ListSessions(&c4, list, &listed).ok());
  EXPECT_EQ(listed.sessions_size(), 0);
  grpc::ClientContext c5;
  c5.AddMetadata("x-linearize-tenant", "alice");
  ASSERT_TRUE(s->stub->GetSession(&c5, get, &out).ok());
}

TEST_F(InferenceServiceTest, IdleSessionsExpireAndLeaveATombstone) {
  auto s = Start();
  v1::CreateSessionRequest req;
  req.set_model_name("lolcats");
  req.mutable_options()->mutable_idle_timeout()->set_nanos(200'000'000);  // 0.2 s
  v1::Session short_lived;
  grpc::ClientContext ctx;
  ASSERT_TRUE(s->stub->CreateSession(&ctx, req, &short_lived).ok());
  const std::string keeper = Create(*s, "lolcats").session_id();  // default 30 min
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  s->sessions->Sweep();
  const v1::Session gone = Get(*s, short_lived.session_id());
  EXPECT_EQ(gone.state(), v1::SESSION_STATE_EXPIRED);
  EXPECT_TRUE(gone.has_end_time());
  Generated g = Gen(*s, short_lived.session_id(), "hello");
  EXPECT_EQ(g.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(g.status.error_message().find("EXPIRED"), std::string::npos);
  EXPECT_EQ(Get(*s, keeper).state(), v1::SESSION_STATE_IDLE);
  req.mutable_options()->mutable_idle_timeout()->set_seconds(-1);
  grpc::ClientContext c2;
  v1::Session bad;
  EXPECT_EQ(s->stub->CreateSession(&c2, req, &bad).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(InferenceServiceTest, SoftmaxModelStopsAtItsContextLimit) {
  auto s = Start();
  const std::string id = Create(*s, "softmax").session_id();
  Generated g = Gen(*s, id, "fill", 1000);
  ASSERT_TRUE(g.status.ok()) << g.status.error_message();
  EXPECT_EQ(g.end.finish_reason(), v1::FINISH_REASON_CONTEXT_LIMIT);
  EXPECT_EQ(g.end.tokens_seen(), 256);
}

}  // namespace
}  // namespace linearize::inference
