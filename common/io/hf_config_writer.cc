#include "common/io/hf_config_writer.h"

#include <charconv>
#include <cmath>
#include <numbers>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "common/io/gguf.h"
#include "common/io/str_util.h"

namespace linearize::io {
namespace {

using nlohmann::json;

// A float32 value (GGUF stores floats so) as the shortest decimal that reads
// back as the same float32; other doubles unchanged.
double Tidy(double v) {
  const float f = static_cast<float>(v);
  if (!std::isfinite(v) || static_cast<double>(f) != v) return v;
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), f);
  if (ec != std::errc()) return v;
  double out = v;
  std::from_chars(buf, end, out);
  return out;
}

json TokenIds(const std::vector<int64_t>& ids) {
  if (ids.empty()) return nullptr;
  if (ids.size() == 1) return ids[0];
  return ids;
}

std::string_view ClassName(std::string_view arch) {
  if (arch == "mistral") return "MistralForCausalLM";
  if (arch == "qwen2") return "Qwen2ForCausalLM";
  return "LlamaForCausalLM";
}

// llama.cpp's rope_freqs divisor for one frequency (convert_hf_to_gguf.py).
double Llama3Divisor(double inv_freq, double factor, double low, double high, double old_len) {
  const double wavelen = 2 * std::numbers::pi / inv_freq;
  if (wavelen < old_len / high) return 1;
  if (wavelen > old_len / low) return factor;
  const double smooth = (old_len / wavelen - low) / (high - low);
  return 1 / ((1 - smooth) / factor + smooth);
}

bool Reproduces(std::span<const float> factors, const std::vector<double>& inv, double factor,
                double low, double high, double old_len) {
  if (!(low > 0) || !(high > low) || !(old_len >= 1)) return false;
  for (size_t i = 0; i < factors.size(); ++i) {
    const double want = factors[i];
    const double got = Llama3Divisor(inv[i], factor, low, high, old_len);
    if (std::abs(got - want) > 1e-5 * std::max(1.0, std::abs(want))) return false;
  }
  return true;
}

// `v` rounded to `digits` significant digits.
double RoundSignificant(double v, int digits) {
  if (v == 0 || !std::isfinite(v)) return v;
  const double scale =
      std::pow(10.0, digits - 1 - static_cast<int>(std::floor(std::log10(std::abs(v)))));
  return std::round(v * scale) / scale;
}

}  // namespace

json HfConfigJson(const ModelConfig& c, std::string_view torch_dtype) {
  json j = json::object();
  j["architectures"] = json::array({std::string(ClassName(c.architecture))});
  j["model_type"] = c.architecture;
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  j["num_key_value_heads"] = c.num_key_value_heads;
  j["head_dim"] =
      c.head_dim > 0 ? c.head_dim : c.hidden_size / std::max<int64_t>(1, c.num_attention_heads);
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = Tidy(c.rms_norm_eps);
  j["rope_theta"] = Tidy(c.rope_theta);
  const RopeScaling& r = c.rope_scaling;
  if (r.type == "llama3") {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", Tidy(r.factor)},
                         {"low_freq_factor", Tidy(r.low_freq_factor)},
                         {"high_freq_factor", Tidy(r.high_freq_factor)},
                         {"original_max_position_embeddings", r.original_max_position_embeddings}};
  } else if (r.type == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", Tidy(r.factor)}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["bos_token_id"] = TokenIds(c.bos_token_ids);
  j["eos_token_id"] = TokenIds(c.eos_token_ids);
  j["attention_dropout"] = 0.0;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  j["torch_dtype"] = std::string(torch_dtype);
  if (c.architecture == "qwen2") {
    j["use_sliding_window"] = c.sliding_window.has_value();
    j["sliding_window"] = c.sliding_window ? json(*c.sliding_window) : json(nullptr);
    j["max_window_layers"] = c.num_hidden_layers;
  } else {
    j["attention_bias"] = c.attention_bias;
    j["mlp_bias"] = false;
    if (c.architecture == "mistral") {
      j["sliding_window"] = c.sliding_window ? json(*c.sliding_window) : json(nullptr);
    } else {
      j["pretraining_tp"] = 1;
    }
  }
  return j;
}

json HfGenerationConfigJson(const ModelConfig& c, int64_t pad_token_id) {
  json j = json::object();
  j["_from_model_config"] = true;
  if (!c.bos_token_ids.empty()) j["bos_token_id"] = TokenIds(c.bos_token_ids);
  if (!c.eos_token_ids.empty()) j["eos_token_id"] = TokenIds(c.eos_token_ids);
  if (pad_token_id >= 0) j["pad_token_id"] = pad_token_id;
  return j;
}

absl::StatusOr<RopeScaling> Llama3ScalingFromFactors(std::span<const float> factors,
                                                     double rope_theta, int64_t head_dim) {
  auto fail = [](std::string_view why) {
    return absl::InvalidArgumentError(internal::StrCat(
        "rope_freqs.weight is not a Llama 3 RoPE schedule (", why,
        "); this frequency scaling cannot be written as a config.json rope_scaling"));
  };
  if (head_dim <= 0 || head_dim % 2 != 0 || factors.size() != static_cast<size_t>(head_dim / 2)) {
    return absl::InvalidArgumentError(internal::StrCat("rope_freqs.weight has ", factors.size(),
                                                       " values; head_dim ", head_dim, " needs ",
                                                       head_dim / 2));
  }
  const size_t n = factors.size();
  std::vector<double> inv(n), wl(n);
  double factor = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(factors[i]) || !(factors[i] > 0)) return fail("a value is not positive");
    inv[i] = 1.0 / std::pow(rope_theta, static_cast<double>(2 * i) / static_cast<double>(head_dim));
    wl[i] = 2 * std::numbers::pi / inv[i];
    factor = std::max(factor, static_cast<double>(factors[i]));
  }
  auto near = [](double a, double b) {
    return std::abs(a - b) <= 1e-5 * std::max(1.0, std::abs(b));
  };
  bool all_one = true;
  for (float f : factors) all_one = all_one && near(f, 1.0);
  if (all_one) return RopeScaling{};
  // Low frequencies (long wavelengths) are divided by `factor`, high ones
  // kept, the band between smoothly interpolated: 1 ... 1, middle, factor ... factor.
  std::vector<size_t> middle;
  size_t ones = 0, fulls = 0;
  for (size_t i = 0; i < n; ++i) {
    const double f = factors[i];
    const int kind = near(f, 1.0) ? 0 : near(f, factor) ? 2 : 1;
    if (kind == 0) {
      if (!middle.empty() || fulls > 0) return fail("factors do not grow with the wavelength");
      ++ones;
    } else if (kind == 1) {
      if (fulls > 0 || f < 1 || f > factor) return fail("factors do not grow with the wavelength");
      middle.push_back(i);
    } else {
      ++fulls;
    }
  }
  // a = old/high and b = old/low are the band edges (wavelengths); in the
  // band the divisor gives smooth = (b/wavelen - 1) / (b/a - 1).
  auto smooth = [&](size_t i) {
    return (1 / static_cast<double>(factors[i]) - 1 / factor) / (1 - 1 / factor);
  };
  const double lower = ones > 0 ? wl[ones - 1] : 0;                    // a > lower
  const double upper = fulls > 0 ? wl[n - fulls] : wl[n - 1] * 4 + 1;  // b < upper
  std::optional<std::pair<double, double>> edges;                      // (a, b)
  if (middle.size() >= 2) {
    const size_t i0 = middle.front(), i1 = middle.back();
    const double x0 = 1 / wl[i0], x1 = 1 / wl[i1];
    const double alpha = (smooth(i1) - smooth(i0)) / (x1 - x0);
    const double beta = smooth(i0) - alpha * x0;
    if (!(alpha > 0) || !(beta < 0)) return fail("the smooth band is not linear in the frequency");
    const double b = -alpha / beta;
    edges = {b / (1 - 1 / beta), b};
  } else if (middle.size() == 1) {
    const size_t m = middle[0];
    const double s = smooth(m);
    // One equation for two edges: any b in (wavelen_m, upper) with its a
    // in (lower, wavelen_m] reproduces every sampled divisor.
    for (int k = 1; k < 60 && !edges; ++k) {
      const double b = wl[m] * std::pow(upper / wl[m], std::pow(0.5, k));
      const double a = b / (1 + (b / wl[m] - 1) / s);
      if (a > lower && a <= wl[m] && a < b) edges = {a, b};
    }
  } else {
    const double lo = lower > 0 ? lower : upper / 8;
    edges = {lo * std::pow(upper / lo, 1.0 / 3), lo * std::pow(upper / lo, 2.0 / 3)};
  }
  if (!edges) return fail("no band edges fit the interpolated factors");

  RopeScaling out;
  out.type = "llama3";
  out.factor = Tidy(factor);
  // Prefer Llama 3's own round values when they fit exactly.
  for (double high : {4.0, 2.0, 8.0}) {
    for (int64_t old = 16; old <= (int64_t{1} << 22); old *= 2) {
      if (Reproduces(factors, inv, out.factor, 1.0, high, static_cast<double>(old))) {
        out.low_freq_factor = 1.0;
        out.high_freq_factor = high;
        out.original_max_position_embeddings = old;
        return out;
      }
    }
  }
  const auto [a, b] = *edges;
  const int64_t old = std::max<int64_t>(1, std::llround(b));
  const double low = static_cast<double>(old) / b, high = static_cast<double>(old) / a;
  out.original_max_position_embeddings = old;
  for (int digits : {4, 7, 17}) {
    const double l = RoundSignificant(low, digits), h = RoundSignificant(high, digits);
    if (Reproduces(factors, inv, out.factor, l, h, static_cast<double>(old))) {
      out.low_freq_factor = l;
      out.high_freq_factor = h;
      return out;
    }
  }
  return fail("the fitted schedule does not reproduce every factor");
}

absl::StatusOr<ModelConfig> HfModelConfigFromGguf(const GgufFile& gguf) {
  absl::StatusOr<ModelConfig> c = ModelConfigFromGguf(gguf);
  if (!c.ok()) return c.status();
  const GgufTensor* t = gguf.FindTensor("rope_freqs.weight");
  if (t == nullptr) return c;
  if (!c->rope_scaling.type.empty()) {
    return absl::InvalidArgumentError(
        internal::StrCat(gguf.name(), ": has both ", c->architecture, ".rope.scaling.type \"",
                         c->rope_scaling.type, "\" and a rope_freqs.weight tensor"));
  }
  std::vector<float> factors(static_cast<size_t>(std::max<int64_t>(0, t->numel())));
  if (absl::Status s = DequantizeToF32(*t, factors); !s.ok()) {
    return absl::InvalidArgumentError(internal::StrCat(gguf.name(), ": ", s.message()));
  }
  absl::StatusOr<RopeScaling> scaling =
      Llama3ScalingFromFactors(factors, c->rope_theta, c->head_dim);
  if (!scaling.ok()) {
    return absl::InvalidArgumentError(
        internal::StrCat(gguf.name(), ": ", scaling.status().message()));
  }
  c->rope_scaling = *std::move(scaling);
  return c;
}

absl::StatusOr<json> HfConfigFromGguf(const GgufFile& gguf, std::string_view torch_dtype) {
  absl::StatusOr<ModelConfig> c = HfModelConfigFromGguf(gguf);
  if (!c.ok()) return c.status();
  json j = HfConfigJson(*c, torch_dtype);
  absl::StatusOr<int64_t> pad = gguf.GetInt("tokenizer.ggml.padding_token_id");
  if (pad.ok() && *pad >= 0 && *pad < c->vocab_size) {
    j["pad_token_id"] = *pad;
  } else if (!pad.ok() && !absl::IsNotFound(pad.status())) {
    return pad.status();
  }
  return j;
}

}  // namespace linearize::io
