#include "common/model/student_attention.h"

#include <ATen/ATen.h>

#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/model/weights.h"
#include "kernels/linear_attention/linear_attention.h"
#include "kernels/lizard/lizard_attention.h"
#include "kernels/lolcats/lolcats_attention.h"

namespace linearize::model {
namespace {

namespace k = kernels;

int64_t TensorBytes(const at::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }

// The tensors of a kernel's State struct S, and their names.
template <typename S>
std::vector<std::string> StateFieldNames() {
  if constexpr (std::is_same_v<S, k::linear_attention::State>) {
    return {"kv", "k_sum"};
  } else {
    return {"kv", "k_sum", "k_window", "v_window", "position"};
  }
}
template <typename S>
std::vector<at::Tensor*> Fields(S& s) {
  if constexpr (std::is_same_v<S, k::linear_attention::State>) {
    return {&s.kv, &s.k_sum};
  } else {
    return {&s.kv, &s.k_sum, &s.k_window, &s.v_window, &s.position};
  }
}

// A kernel's recurrent state as an AttentionState. S: kernels' State struct.
template <typename S>
class RecurrentState final : public AttentionState {
 public:
  explicit RecurrentState(S s) : state(std::move(s)) {}
  std::unique_ptr<AttentionState> Clone() const override {
    S copy = state;
    for (at::Tensor* t : Fields(copy)) {
      if (t->defined()) *t = t->clone();
    }
    return std::make_unique<RecurrentState>(std::move(copy));
  }
  int64_t bytes() const override {
    int64_t total = 0;
    for (at::Tensor* t : Fields(const_cast<S&>(state))) total += TensorBytes(*t);
    return total;
  }
  std::vector<std::pair<std::string, at::Tensor>> Export() const override {
    std::vector<std::pair<std::string, at::Tensor>> out;
    const auto names = StateFieldNames<S>();
    const auto fields = Fields(const_cast<S&>(state));
    for (size_t i = 0; i < fields.size(); ++i) out.emplace_back(names[i], *fields[i]);
    return out;
  }
  // Checks everything before copying, so a bad snapshot leaves the state as it was.
  void Import(const std::vector<std::pair<std::string, at::Tensor>>& tensors) override {
    const auto names = StateFieldNames<S>();
    const auto fields = Fields(state);
    TORCH_CHECK(tensors.size() == fields.size(), "recurrent state: a snapshot must hold ",
                fields.size(), " tensors, got ", tensors.size());
    for (size_t i = 0; i < fields.size(); ++i) {
      TORCH_CHECK(tensors[i].first == names[i], "recurrent state: expected tensor ", names[i],
                  ", got ", tensors[i].first);
      TORCH_CHECK(tensors[i].second.sizes() == fields[i]->sizes(), "recurrent state: tensor ",
                  names[i], " must be ", fields[i]->sizes(), ", got ", tensors[i].second.sizes());
    }
    for (size_t i = 0; i < fields.size(); ++i) fields[i]->copy_(tensors[i].second);
  }
  S state;
};

template <typename S>
S& StateOf(AttentionState* state, const char* who) {
  auto* s = dynamic_cast<RecurrentState<S>*>(state);
  TORCH_CHECK(s != nullptr, who, ": the memory was made for another attention");
  return s->state;
}

// One token: a DecodeStep (the batched decode path; rows may sit at different
// positions). More: the parallel prefill, from the empty state at position 0
// and continuing the state after (every row at `position`). `prefill(initial)`
// returns the output and the new state, `step(t)` the output of token t.
// The new state is copied into the old state's tensors: a state is updated in
// place, so its tensors keep their addresses (a captured DecodeGraph and
// DecodeBatch's write-back rely on it).
template <typename S, typename Prefill, typename Step>
at::Tensor Recurrent(S& state, int64_t position, int64_t tokens, Prefill prefill, Step step) {
  if (tokens == 1) return step(0);
  auto r = prefill(position == 0 ? nullptr : &state);
  const auto into = Fields(state);
  const auto from = Fields(r.state);
  for (size_t i = 0; i < into.size(); ++i) {
    if (into[i]->defined() && into[i]->sizes() == from[i]->sizes()) {
      into[i]->copy_(*from[i]);
    } else {
      *into[i] = *from[i];
    }
  }
  return r.y;
}

at::Tensor Tok(const at::Tensor& x, int64_t t) { return x.narrow(2, t, 1); }

class LolcatsAttention final : public StudentAttention {
 public:
  LolcatsAttention(const LinearAttentionConfig& c, const io::ModelConfig& m, StudentTensors t)
      : tensors_(std::move(t)), hq_(m.num_attention_heads), hkv_(m.num_key_value_heads),
        d_(m.head_dim) {
    weights_.maps.kind = k::FeatureMapKind::kHedgehog;
    weights_.maps.q_weight = tensors_.at("feature_map_q.weight");
    weights_.maps.k_weight = tensors_.at("feature_map_k.weight");
    weights_.window_logit = tensors_.at("window_factor");
    options_.window = c.window;
    options_.window_kind = c.terrace ? k::lolcats::WindowKind::kTerrace
                                     : k::lolcats::WindowKind::kSliding;
  }
  std::string_view name() const override { return "lolcats"; }
  const StudentTensors& tensors() const override { return tensors_; }

  at::Tensor AttentionWeights(const AttentionInputs& in) const override {
    return k::lolcats::AttentionWeights(in.q, in.k, in.v, weights_, options_);
  }
  at::Tensor Forward(const at::Tensor& q, const at::Tensor& kk, const at::Tensor& v,
                     AttentionState* state, int64_t position) const override {
    if (state == nullptr) return k::lolcats::ForwardParallel(q, kk, v, weights_, options_);
    auto& s = StateOf<k::lolcats::State>(state, "LolcatsAttention");
    return Recurrent(
        s, position, q.size(2),
        [&](const k::lolcats::State* initial) {
          return k::lolcats::Prefill(q, kk, v, weights_, options_, initial);
        },
        [&](int64_t t) {
          return k::lolcats::DecodeStep(s, Tok(q, t), Tok(kk, t), Tok(v, t), weights_, options_);
        });
  }
  std::unique_ptr<AttentionState> NewState(int64_t batch, int64_t,
                                           const at::TensorOptions& options) const override {
    return std::make_unique<RecurrentState<k::lolcats::State>>(k::lolcats::EmptyState(
        batch, hq_, hkv_, k::FeatureDim(weights_.maps, d_), d_, options_, options));
  }

 private:
  StudentTensors tensors_;
  int64_t hq_, hkv_, d_;
  k::lolcats::Weights weights_;
  k::lolcats::Options options_;
};

class LizardAttention final : public StudentAttention {
 public:
  LizardAttention(const LinearAttentionConfig& c, const io::ModelConfig& m, StudentTensors t)
      : tensors_(std::move(t)), hq_(m.num_attention_heads), hkv_(m.num_key_value_heads),
        d_(m.head_dim), gate_normalizer_(c.gate_normalizer) {
    weights_.maps.kind = k::FeatureMapKind::kHedgehog;
    weights_.maps.q_weight = tensors_.at("feature_map_q.weight");
    weights_.maps.k_weight = tensors_.at("feature_map_k.weight");
    weights_.meta_logits = tensors_.at("meta_logits");
    weights_.alpha = tensors_.at("alpha");
    gate_ = tensors_.at("gate_proj.weight");
    options_.window = c.window;
  }
  std::string_view name() const override { return "lizard"; }
  bool needs_hidden() const override { return true; }
  const StudentTensors& tensors() const override { return tensors_; }

  at::Tensor Forward(const at::Tensor&, const at::Tensor&, const at::Tensor&, AttentionState*,
                     int64_t) const override {
    TORCH_CHECK(false, "LizardAttention needs the layer's hidden states and un-rotated q/k "
                       "(call Forward(AttentionInputs))");
  }
  at::Tensor AttentionWeights(const AttentionInputs& in) const override {
    return k::lizard::AttentionWeights(KernelInputs(in), weights_, options_);
  }
  at::Tensor Forward(const AttentionInputs& in, AttentionState* state,
                     int64_t position) const override {
    const k::lizard::Inputs x = KernelInputs(in);
    if (state == nullptr) return k::lizard::ForwardParallel(x, weights_, options_);
    auto& s = StateOf<k::lizard::State>(state, "LizardAttention");
    return Recurrent(
        s, position, in.q.size(2),
        [&](const k::lizard::State* initial) {
          return k::lizard::Prefill(x, weights_, options_, initial);
        },
        [&](int64_t t) {
          k::lizard::Inputs one{Tok(x.q, t), Tok(x.k, t), Tok(x.v, t),
                                x.log_gamma.narrow(2, t, 1), Tok(x.q_window, t),
                                Tok(x.k_window, t)};
          return k::lizard::DecodeStep(s, one, weights_, options_);
        });
  }
  std::unique_ptr<AttentionState> NewState(int64_t batch, int64_t,
                                           const at::TensorOptions& options) const override {
    return std::make_unique<RecurrentState<k::lizard::State>>(k::lizard::EmptyState(
        batch, hq_, hkv_, k::FeatureDim(weights_.maps, d_), d_, options_, options));
  }

 private:
  // The gated branch reads q/k before RoPE, the window branch after.
  k::lizard::Inputs KernelInputs(const AttentionInputs& in) const {
    TORCH_CHECK(in.hidden.defined() && in.q_nope.defined() && in.k_nope.defined(),
                "LizardAttention needs hidden, q_nope and k_nope");
    // log gamma = logsigmoid(W_gamma x) / normaliser: [B, T, Hq] -> [B, Hq, T]
    const at::Tensor log_gamma =
        (at::log_sigmoid(at::linear(in.hidden.to(gate_.scalar_type()), gate_)) /
         gate_normalizer_)
            .transpose(1, 2);
    return k::lizard::Inputs{in.q_nope, in.k_nope, in.v, log_gamma, in.q, in.k};
  }

  StudentTensors tensors_;
  int64_t hq_, hkv_, d_;
  double gate_normalizer_;
  at::Tensor gate_;
  k::lizard::Weights weights_;
  k::lizard::Options options_;
};

class LinearAttention final : public StudentAttention {
 public:
  LinearAttention(const io::ModelConfig& m)
      : hq_(m.num_attention_heads), d_(m.head_dim) {
    maps_.kind = k::FeatureMapKind::kEluPlusOne;
  }
  std::string_view name() const override { return "linear"; }
  const StudentTensors& tensors() const override { return tensors_; }

  at::Tensor AttentionWeights(const AttentionInputs& in) const override {
    return k::linear_attention::AttentionWeights(in.q, in.k, in.v, maps_);
  }
  at::Tensor Forward(const at::Tensor& q, const at::Tensor& kk, const at::Tensor& v,
                     AttentionState* state, int64_t position) const override {
    namespace la = k::linear_attention;
    if (state == nullptr) return la::ForwardParallel(q, kk, v, maps_);
    auto& s = StateOf<la::State>(state, "LinearAttention");
    return Recurrent(
        s, position, q.size(2),
        [&](const la::State* initial) { return la::Prefill(q, kk, v, maps_, {}, initial); },
        [&](int64_t t) { return la::DecodeStep(s, Tok(q, t), Tok(kk, t), Tok(v, t), maps_); });
  }
  std::unique_ptr<AttentionState> NewState(int64_t batch, int64_t,
                                           const at::TensorOptions& options) const override {
    // The linear state is in the compute dtype: float64 stays, the rest float32.
    const auto compute = options.dtype(options.dtype() == at::kDouble ? at::kDouble : at::kFloat);
    return std::make_unique<RecurrentState<k::linear_attention::State>>(
        k::linear_attention::EmptyState(batch, hq_, k::FeatureDim(maps_, d_), d_, compute));
  }

 private:
  StudentTensors tensors_;
  int64_t hq_, d_;
  k::FeatureMaps maps_;
};

}  // namespace

std::vector<std::pair<std::string, std::vector<int64_t>>> StudentTensorShapes(
    const LinearAttentionConfig& c, const io::ModelConfig& m) {
  const int64_t hq = m.num_attention_heads, d = m.head_dim, f = c.feature_dim;
  switch (c.recipe) {
    case Recipe::kLolcats:
      return {{"feature_map_q.weight", {hq, d, f}},
              {"feature_map_k.weight", {hq, d, f}},
              {"window_factor", {hq}}};
    case Recipe::kLizard:
      return {{"feature_map_q.weight", {hq, d, f}},
              {"feature_map_k.weight", {hq, d, f}},
              {"gate_proj.weight", {hq, m.hidden_size}},
              {"meta_logits", {hq, c.meta_tokens}},
              {"alpha", {hq}}};
    case Recipe::kLinear:
      return {};
  }
  return {};
}

StudentTensors InitStudentTensors(const LinearAttentionConfig& c, const io::ModelConfig& m,
                                  int64_t layer, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed * 1000003ULL + static_cast<uint64_t>(layer));
  const auto fp32 = at::TensorOptions().dtype(at::kFloat);
  StudentTensors out;
  for (const auto& [name, shape] : StudentTensorShapes(c, m)) {
    at::Tensor t;
    if (name == "feature_map_q.weight" || name == "feature_map_k.weight") {
      // Identity on the first min(D, F) columns, as the reference's eye_ init.
      t = at::eye(shape[1], shape[2], fp32).expand(shape).contiguous() +
          at::empty(shape, fp32).normal_(0, 0.01, gen);
    } else if (name == "window_factor") {
      t = at::full(shape, std::log(0.1 / 0.9), fp32);  // sigmoid(w) = 0.1
    } else if (name == "gate_proj.weight") {
      t = at::empty(shape, fp32).normal_(0, 0.01, gen);
    } else if (name == "meta_logits") {
      t = at::zeros(shape, fp32);
    } else {  // alpha
      t = at::ones(shape, fp32);
    }
    out.emplace(name, std::move(t));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<StudentAttention>> MakeStudentAttention(
    const LinearAttentionConfig& c, const io::ModelConfig& m, StudentTensors tensors) {
  if (absl::Status s = ValidateLinearAttentionConfig(c, m); !s.ok()) return s;
  for (const auto& [name, shape] : StudentTensorShapes(c, m)) {
    const auto it = tensors.find(name);
    if (it == tensors.end() || !it->second.defined()) {
      return absl::InvalidArgumentError(absl::StrCat("missing tensor ", name, " (expected shape ",
                                                     ShapeString(shape), ")"));
    }
    if (it->second.sizes() != at::IntArrayRef(shape)) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", name, " has shape ",
                                                     ShapeString(it->second.sizes()),
                                                     ", expected ", ShapeString(shape)));
    }
  }
  switch (c.recipe) {
    case Recipe::kLolcats:
      return std::unique_ptr<StudentAttention>(new LolcatsAttention(c, m, std::move(tensors)));
    case Recipe::kLizard:
      return std::unique_ptr<StudentAttention>(new LizardAttention(c, m, std::move(tensors)));
    case Recipe::kLinear:
      return std::unique_ptr<StudentAttention>(new LinearAttention(m));
  }
  return absl::InvalidArgumentError("unknown recipe");
}

}  // namespace linearize::model
