// MQAR and passkey: sample layout, determinism, and scoring equal to a
// brute-force recomputation (full forwards, argmax by hand).
#include "common/eval/recall.h"

#include <ATen/ATen.h>

#include <set>

#include "common/model/load.h"
#include "common/model/student_attention.h"
#include "gtest/gtest.h"
#include "tests/unit/model/model_test_util.h"

namespace linearize::eval {
namespace {

class RecallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = model::LoadModel(testing::ModelDir("llama3_scaled"));
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    loaded_ = *std::move(loaded);
  }
  MqarOptions Options() const {
    MqarOptions o;
    o.context_length = 96;
    o.num_pairs = 6;
    o.num_queries = 4;
    o.num_samples = 5;
    o.seed = 42;
    o.pool = MqarTokenPool(*loaded_.model, nullptr);
    o.bos = 1501;
    return o;
  }
  model::LoadedModel loaded_;
};

TEST_F(RecallTest, MqarSampleLayout) {
  const MqarOptions o = Options();
  absl::StatusOr<MqarSample> s = MakeMqarSample(o, 3);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->ids.size(), 96u);
  EXPECT_EQ(s->ids[0], 1501);
  ASSERT_EQ(s->answers.size(), 4u);
  std::set<int32_t> keys;
  for (int i = 0; i < 6; ++i) keys.insert(s->ids[1 + 2 * i]);
  EXPECT_EQ(keys.size(), 6u);
  for (size_t q = 0; q < 4; ++q) {
    const int64_t p = s->query_positions[q];
    EXPECT_EQ(p, 96 - 8 + 2 * static_cast<int64_t>(q));
    EXPECT_EQ(s->ids[p + 1], s->answers[q]);
    // The query key was planted once at the start, with this value after it.
    int found = 0;
    for (int i = 0; i < 6; ++i) {
      if (s->ids[1 + 2 * i] == s->ids[p]) {
        ++found;
        EXPECT_EQ(s->ids[2 + 2 * i], s->answers[q]);
      }
    }
    EXPECT_EQ(found, 1);
  }
  absl::StatusOr<MqarSample> again = MakeMqarSample(o, 3);
  EXPECT_EQ(again->ids, s->ids);
  EXPECT_NE(MakeMqarSample(o, 4)->ids, s->ids);
}

TEST_F(RecallTest, MqarSeparatedLayout) {
  MqarOptions o = Options();
  SetMqarSeparators(*loaded_.tokenizer, &o);
  ASSERT_TRUE(o.kv_separator && o.pair_separator);
  EXPECT_EQ(loaded_.tokenizer->Decode(std::vector<int32_t>{*o.kv_separator}), ":");
  absl::StatusOr<MqarSample> s = MakeMqarSample(o, 0);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->ids.size(), 96u);
  // bos, then "k : v ," x 6; the 4 queries fill the last 16 tokens.
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(s->ids[2 + 4 * i], *o.kv_separator);
    EXPECT_EQ(s->ids[4 + 4 * i], *o.pair_separator);
  }
  for (size_t q = 0; q < 4; ++q) {
    const int64_t p = s->query_positions[q];
    EXPECT_EQ(p, 96 - 16 + 4 * static_cast<int64_t>(q) + 1);
    EXPECT_EQ(s->ids[p], *o.kv_separator);
    EXPECT_EQ(s->ids[p + 1], s->answers[q]);
    bool planted = false;
    for (int i = 0; i < 6; ++i) {
      planted |= s->ids[1 + 4 * i] == s->ids[p - 1] && s->ids[3 + 4 * i] == s->answers[q];
    }
    EXPECT_TRUE(planted) << q;
  }
  o.num_pairs = 12;
  o.num_queries = 12;
  EXPECT_FALSE(MakeMqarSample(o, 0).ok());  // 97 tokens > 96
}

TEST_F(RecallTest, MqarScoringEqualsBruteForce) {
  for (bool separated : {false, true}) {
    MqarOptions o = Options();
    if (separated) SetMqarSeparators(*loaded_.tokenizer, &o);
    absl::StatusOr<RecallResult> r = EvaluateMqar(*loaded_.model, o);
    ASSERT_TRUE(r.ok()) << r.status();
    int64_t correct = 0, trials = 0;
    for (int64_t i = 0; i < o.num_samples; ++i) {
      const MqarSample s = *MakeMqarSample(o, i);
      const std::vector<int64_t> ids(s.ids.begin(), s.ids.end());
      const at::Tensor logits = (*loaded_.model->Forward(testing::Ids(ids)))[0];
      for (size_t q = 0; q < s.answers.size(); ++q) {
        correct += logits[s.query_positions[q]].argmax().item<int64_t>() == s.answers[q];
        ++trials;
      }
    }
    EXPECT_EQ(r->trials, trials);
    EXPECT_EQ(r->correct, correct);
    EXPECT_DOUBLE_EQ(r->accuracy, static_cast<double>(correct) / trials);
  }
}

TEST_F(RecallTest, MqarRejectsBadLayouts) {
  MqarOptions o = Options();
  o.num_pairs = 40;
  o.num_queries = 40;
  EXPECT_FALSE(MakeMqarSample(o, 0).ok());  // 161 tokens > 96
  o = Options();
  o.num_queries = 7;
  EXPECT_FALSE(MakeMqarSample(o, 0).ok());
  o = Options();
  o.pool.resize(10);
  EXPECT_FALSE(MakeMqarSample(o, 0).ok());
  o = Options();
  o.context_length = 300;  // above the model's 256
  EXPECT_FALSE(EvaluateMqar(*loaded_.model, o).ok());
}

TEST_F(RecallTest, FirstNumber) {
  EXPECT_EQ(FirstNumber(" 68220. Remember"), "68220");
  EXPECT_EQ(FirstNumber("is 12 and 34"), "12");
  EXPECT_EQ(FirstNumber("none"), "");
}

TEST_F(RecallTest, PasskeyScoringEqualsBruteForce) {
  ASSERT_NE(loaded_.tokenizer, nullptr);
  const tokenizer::Tokenizer& tok = *loaded_.tokenizer;
  PasskeyOptions o;
  o.length = 180;
  o.depth = 0.25;
  o.num_samples = 2;
  o.seed = 5;
  o.max_new_tokens = 6;
  absl::StatusOr<PasskeySample> s = MakePasskeySample(tok, o, 0);
  ASSERT_TRUE(s.ok()) << s.status();
  ASSERT_EQ(s->passkey.size(), 5u);
  const std::string text = tok.Decode(s->ids);
  const std::string needle = " The pass key is " + s->passkey + ". Remember it. " + s->passkey +
                             " is the pass key.";
  const size_t at = text.find(needle);
  ASSERT_NE(at, std::string::npos) << text;
  EXPECT_GT(at, 0u);
  EXPECT_TRUE(text.ends_with(". What is the pass key? The pass key is")) << text;
  EXPECT_LE(s->ids.size(), 190u);
  // Depth 0: right after the introduction; depth 1: right before the question.
  PasskeyOptions edge = o;
  edge.depth = 0;
  const std::string first = tok.Decode(MakePasskeySample(tok, edge, 0)->ids);
  EXPECT_NE(first.find("information there." + needle + " The grass"), std::string::npos) << first;
  edge.depth = 1;
  const std::string last = tok.Decode(MakePasskeySample(tok, edge, 0)->ids);
  EXPECT_NE(last.find("back again." + needle + " What is"), std::string::npos) << last;
  edge.depth = 1.5;
  EXPECT_FALSE(MakePasskeySample(tok, edge, 0).ok());

  absl::StatusOr<RecallResult> r = EvaluatePasskey(*loaded_.model, tok, o);
  ASSERT_TRUE(r.ok()) << r.status();
  int64_t correct = 0;
  for (int64_t i = 0; i < o.num_samples; ++i) {
    const PasskeySample p = *MakePasskeySample(tok, o, i);
    std::vector<int64_t> ids(p.ids.begin(), p.ids.end());
    std::vector<int32_t> out;
    for (int64_t t = 0; t < o.max_new_tokens; ++t) {  // greedy, no cache
      const at::Tensor logits = (*loaded_.model->Forward(testing::Ids(ids)))[0][-1];
      const int64_t next = logits.argmax().item<int64_t>();
      ids.push_back(next);
      out.push_back(static_cast<int32_t>(next));
    }
    correct += FirstNumber(tok.Decode(out, /*skip_special_tokens=*/true)) == p.passkey;
  }
  EXPECT_EQ(r->trials, 2);
  EXPECT_EQ(r->correct, correct);
  o.length = 400;
  EXPECT_FALSE(EvaluatePasskey(*loaded_.model, tok, o).ok());
}

// A fully recurrent student has no context limit for recall: its state does
// not grow, so passkey and MQAR may go past the teacher's RoPE range (which
// is where a linearized model is meant to be tested); the teacher refuses.
TEST_F(RecallTest, RecurrentStudentsRecallPastTheTeachersContext) {
  ASSERT_NE(loaded_.tokenizer, nullptr);
  const int64_t limit = loaded_.model->config().max_position_embeddings;
  EXPECT_EQ(RecallContextLimit(*loaded_.model), limit);
  PasskeyOptions o;
  o.length = limit + 100;
  o.num_samples = 1;
  o.max_new_tokens = 4;
  const absl::StatusOr<RecallResult> refused = EvaluatePasskey(*loaded_.model, *loaded_.tokenizer, o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("exceeds the model's context"), std::string::npos);

  const model::LinearAttentionConfig c = model::DefaultLinearAttentionConfig(model::Recipe::kLinear);
  for (int64_t l = 0; l < loaded_.model->num_layers(); ++l) {
    auto a = model::MakeStudentAttention(c, loaded_.model->config(),
                                         model::InitStudentTensors(c, loaded_.model->config(), l, 3));
    ASSERT_TRUE(a.ok()) << a.status();
    loaded_.model->SetAttention(l, *std::move(a));
  }
  EXPECT_GT(RecallContextLimit(*loaded_.model), limit);
  const absl::StatusOr<RecallResult> passkey = EvaluatePasskey(*loaded_.model, *loaded_.tokenizer, o);
  ASSERT_TRUE(passkey.ok()) << passkey.status();
  EXPECT_EQ(passkey->trials, 1);
  EXPECT_GT(passkey->context_length, limit);
  MqarOptions m = Options();
  m.context_length = limit + 64;
  m.num_samples = 1;
  const absl::StatusOr<RecallResult> mqar = EvaluateMqar(*loaded_.model, m);
  ASSERT_TRUE(mqar.ok()) << mqar.status();
  EXPECT_EQ(mqar->context_length, limit + 64);
}

}  // namespace
}  // namespace linearize::eval
