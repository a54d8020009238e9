#include "common/eval/report.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/eval/plot.h"

namespace linearize::eval {
namespace {

using Json = nlohmann::json;

Json RecallJson(const RecallEntry& e) {
  return {{"model", e.model},
          {"context_length", e.result.context_length},
          {"num_pairs", e.result.num_pairs},
          {"depth", e.result.depth},
          {"trials", e.result.trials},
          {"correct", e.result.correct},
          {"accuracy", e.result.accuracy}};
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace

Json ReportJson(const EvalReport& r) {
  Json j = {{"model", r.model}};
  if (!r.teacher.empty()) j["teacher"] = r.teacher;
  for (const PerplexityEntry& e : r.perplexity) {
    Json p = {{"model", e.model},           {"text", e.text},
              {"tokens_scored", e.result.tokens_scored}, {"mean_nll", e.result.mean_nll},
              {"perplexity", e.result.perplexity}};
    if (e.curve) {
      p["curve"] = {{"bucket", e.curve->bucket},
                    {"start", e.curve->start},
                    {"mean_nll", e.curve->mean_nll},
                    {"count", e.curve->count}};
    }
    j["perplexity"].push_back(p);
  }
  for (const ComparisonEntry& e : r.comparisons) {
    const Comparison& c = e.result;
    j["comparisons"].push_back({{"model", e.model},
                                {"tokens", c.tokens},
                                {"teacher_perplexity", c.teacher_perplexity},
                                {"student_perplexity", c.student_perplexity},
                                {"perplexity_ratio", c.perplexity_ratio},
                                {"kl", c.kl},
                                {"top1_agreement", c.top1_agreement}});
  }
  for (const LayerErrorEntry& e : r.attention_layers) {
    j["attention_layers"].push_back({{"model", e.model},
                                     {"layer", e.result.layer},
                                     {"tokens", e.result.tokens},
                                     {"mse", e.result.mse},
                                     {"relative_error", e.result.relative}});
  }
  for (const RecallEntry& e : r.mqar) j["mqar"].push_back(RecallJson(e));
  for (const RecallEntry& e : r.passkey) j["passkey"].push_back(RecallJson(e));
  for (const McEntry& e : r.mc) {
    j["multiple_choice"].push_back({{"model", e.model},
                                    {"task", e.result.task},
                                    {"num_fewshot", e.result.num_fewshot},
                                    {"questions", e.result.questions},
                                    {"acc", e.result.acc},
                                    {"acc_norm", e.result.acc_norm}});
  }
  for (const SpeedEntry& e : r.speed) {
    j["speed"].push_back({{"model", e.model},
                          {"prompt_tokens", e.result.prompt_tokens},
                          {"decode_tokens", e.result.decode_tokens},
                          {"threads", e.result.threads},
                          {"prefill_tokens_per_second", e.result.prefill_tokens_per_second},
                          {"decode_tokens_per_second", e.result.decode_tokens_per_second}});
  }
  return j;
}

std::string ReportMarkdown(const EvalReport& r) {
  std::string md = absl::StrCat("# Evaluation of `", r.model, "`\n\n");
  if (!r.teacher.empty()) absl::StrAppend(&md, "Teacher: `", r.teacher, "`\n\n");
  if (!r.perplexity.empty()) {
    absl::StrAppend(&md, "## Perplexity\n\n| model | text | tokens | mean NLL | perplexity |\n"
                         "|---|---|---:|---:|---:|\n");
    for (const PerplexityEntry& e : r.perplexity) {
      absl::StrAppend(&md, absl::StrFormat("| %s | %s | %d | %.4f | %.3f |\n", e.model, e.text,
                                           e.result.tokens_scored, e.result.mean_nll,
                                           e.result.perplexity));
    }
    md += "\n";
  }
  if (!r.comparisons.empty()) {
    absl::StrAppend(&md, "## Teacher vs student\n\n| student | tokens | teacher ppl | "
                         "student ppl | ratio | KL(teacher‖student) | top-1 agreement |\n"
                         "|---|---:|---:|---:|---:|---:|---:|\n");
    for (const ComparisonEntry& e : r.comparisons) {
      const Comparison& c = e.result;
      absl::StrAppend(&md, absl::StrFormat("| %s | %d | %.3f | %.3f | %.4f | %.4f | %.4f |\n",
                                           e.model, c.tokens, c.teacher_perplexity,
                                           c.student_perplexity, c.perplexity_ratio, c.kl,
                                           c.top1_agreement));
    }
    md += "\n";
  }
  if (!r.attention_layers.empty()) {
    absl::StrAppend(&md, "## Attention output by layer (student on the teacher's inputs)\n\n"
                         "| student | layer | tokens | MSE | relative error |\n"
                         "|---|---:|---:|---:|---:|\n");
    for (const LayerErrorEntry& e : r.attention_layers) {
      absl::StrAppend(&md, absl::StrFormat("| %s | %d | %d | %.4g | %.4f |\n", e.model,
                                           e.result.layer, e.result.tokens, e.result.mse,
                                           e.result.relative));
    }
    md += "\n";
  }
  if (!r.mqar.empty()) {
    absl::StrAppend(&md, "## Associative recall (MQAR)\n\n| model | context | pairs | queries | "
                         "correct | accuracy |\n|---|---:|---:|---:|---:|---:|\n");
    for (const RecallEntry& e : r.mqar) {
      absl::StrAppend(&md, absl::StrFormat("| %s | %d | %d | %d | %d | %.3f |\n", e.model,
                                           e.result.context_length, e.result.num_pairs,
                                           e.result.trials, e.result.correct, e.result.accuracy));
    }
    md += "\n";
  }
  if (!r.passkey.empty()) {
    absl::StrAppend(&md, "## Passkey retrieval\n\n| model | prompt tokens | depth | trials | "
                         "correct | accuracy |\n|---|---:|---:|---:|---:|---:|\n");
    for (const RecallEntry& e : r.passkey) {
      absl::StrAppend(&md, absl::StrFormat("| %s | %d | %.2f | %d | %d | %.3f |\n", e.model,
                                           e.result.context_length, e.result.depth,
                                           e.result.trials, e.result.correct, e.result.accuracy));
    }
    md += "\n";
  }
  if (!r.mc.empty()) {
    absl::StrAppend(&md, "## Multiple choice (log-likelihood)\n\n| model | task | shots | "
                         "questions | acc | acc_norm |\n|---|---|---:|---:|---:|---:|\n");
    for (const McEntry& e : r.mc) {
      absl::StrAppend(&md, absl::StrFormat("| %s | %s | %d | %d | %.3f | %.3f |\n", e.model,
                                           e.result.task, e.result.num_fewshot,
                                           e.result.questions, e.result.acc, e.result.acc_norm));
    }
    md += "\n";
  }
  if (!r.speed.empty()) {
    absl::StrAppend(&md, "## Generation speed\n\n| model | prompt | decoded | threads | "
                         "prefill tok/s | decode tok/s |\n|---|---:|---:|---:|---:|---:|\n");
    for (const SpeedEntry& e : r.speed) {
      absl::StrAppend(&md, absl::StrFormat("| %s | %d | %d | %d | %.1f | %.1f |\n", e.model,
                                           e.result.prompt_tokens, e.result.decode_tokens,
                                           e.result.threads, e.result.prefill_tokens_per_second,
                                           e.result.decode_tokens_per_second));
    }
    md += "\n";
  }
  return md;
}

absl::Status WriteReport(const EvalReport& r, const std::string& dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat(dir, ": cannot create: ", std::strerror(errno)));
  }
  if (absl::Status st = WriteFile(dir + "/report.json", ReportJson(r).dump(2) + "\n"); !st.ok()) {
    return st;
  }
  if (absl::Status st = WriteFile(dir + "/report.md", ReportMarkdown(r)); !st.ok()) return st;

  // One curve per model and text; the text's file name tells them apart
  // when there are several.
  std::set<std::string> texts;
  for (const PerplexityEntry& e : r.perplexity) {
    if (e.curve) texts.insert(e.text);
  }
  std::vector<PlotSeries> ppl;
  for (const PerplexityEntry& e : r.perplexity) {
    if (!e.curve) continue;
    std::string label = e.model;
    if (texts.size() > 1) {
      absl::StrAppend(&label, ", ", e.text.substr(e.text.find_last_of('/') + 1));
    }
    PlotSeries s{label, {}, {}};
    for (size_t i = 0; i < e.curve->start.size(); ++i) {
      s.x.push_back(static_cast<double>(e.curve->start[i]));
      s.y.push_back(e.curve->mean_nll[i]);
    }
    ppl.push_back(std::move(s));
  }
  if (!ppl.empty()) {
    absl::Status st = WriteLinePlot(dir + "/ppl_vs_position.png",
                                    {"Mean NLL by token position", "position (bucket start)",
                                     "mean NLL (nats)", false},
                                    ppl);
    if (!st.ok()) return st;
  }
  std::vector<PlotSeries> layers;
  std::map<std::string, size_t> layer_series;
  for (const LayerErrorEntry& e : r.attention_layers) {
    auto [it, fresh] = layer_series.emplace(e.model, layers.size());
    if (fresh) layers.push_back({e.model, {}, {}});
    layers[it->second].x.push_back(static_cast<double>(e.result.layer));
    layers[it->second].y.push_back(e.result.relative);
  }
  if (!layers.empty()) {
    absl::Status st = WriteLinePlot(dir + "/attention_error_by_layer.png",
                                    {"Attention output error by layer (on the teacher's inputs)",
                                     "layer", "relative error", false},
                                    layers);
    if (!st.ok()) return st;
  }
  // One line per (model, pairs) for MQAR and per model for passkey, in
  // the order the report lists them (the teacher first).
  std::vector<PlotSeries> recall;
  std::map<std::string, size_t> index;
  auto add = [&](const std::string& name, const RecallResult& result) {
    auto [it, fresh] = index.emplace(name, recall.size());
    if (fresh) recall.push_back({name, {}, {}});
    recall[it->second].x.push_back(static_cast<double>(result.context_length));
    recall[it->second].y.push_back(result.accuracy);
  };
  for (const RecallEntry& e : r.mqar) {
    add(absl::StrCat(e.model, " MQAR ", e.result.num_pairs, " pairs"), e.result);
  }
  for (const RecallEntry& e : r.passkey) {
    add(absl::StrFormat("%s passkey depth %.2g", e.model, e.result.depth), e.result);
  }
  if (!recall.empty()) {
    absl::Status st = WriteLinePlot(
        dir + "/recall_vs_context.png",
        {"Recall accuracy by context length", "context length (tokens)", "accuracy", true, 800,
         500, 0.0, 1.0},
        recall);
    if (!st.ok()) return st;
  }
  return absl::OkStatus();
}

namespace {

// Reads field `key` of `obj` as T; the error names the file, the path to the
// object and the key.
template <typename T>
absl::StatusOr<T> Field(const Json& obj, const char* key, const std::string& where) {
  if (!obj.is_object() || !obj.contains(key)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing field \"", key, "\""));
  }
  try {
    return obj.at(key).get<T>();
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".", key, ": wrong type (", e.what(), ")"));
  }
}

#define LNZ_FIELD(var, type, obj, key, where)                   \
  absl::StatusOr<type> var##_or = Field<type>(obj, key, where); \
  if (!var##_or.ok()) return var##_or.status();                 \
  const type var = *var##_or

absl::StatusOr<RecallEntry> ParseRecall(const Json& e, const std::string& where) {
  LNZ_FIELD(model, std::string, e, "model", where);
  LNZ_FIELD(context, int64_t, e, "context_length", where);
  LNZ_FIELD(pairs, int64_t, e, "num_pairs", where);
  LNZ_FIELD(depth, double, e, "depth", where);
  LNZ_FIELD(trials, int64_t, e, "trials", where);
  LNZ_FIELD(correct, int64_t, e, "correct", where);
  LNZ_FIELD(accuracy, double, e, "accuracy", where);
  return RecallEntry{model, {context, pairs, depth, trials, correct, accuracy}};
}

absl::Status ParseReport(const Json& j, const std::string& file, EvalReport* r) {
  LNZ_FIELD(model, std::string, j, "model", file);
  r->model = model;
  if (j.contains("teacher")) {
    LNZ_FIELD(teacher, std::string, j, "teacher", file);
    r->teacher = teacher;
  }
  const auto list = [&](const char* key) { return j.contains(key) ? j.at(key) : Json::array(); };
  size_t i = 0;
  for (const Json& e : list("perplexity")) {
    const std::string w = absl::StrCat(file, ": perplexity[", i++, "]");
    LNZ_FIELD(m, std::string, e, "model", w);
    LNZ_FIELD(text, std::string, e, "text", w);
    LNZ_FIELD(tokens, int64_t, e, "tokens_scored", w);
    LNZ_FIELD(nll, double, e, "mean_nll", w);
    LNZ_FIELD(ppl, double, e, "perplexity", w);
    PerplexityEntry p{m, text, {nll * static_cast<double>(tokens), tokens, nll, ppl}, std::nullopt};
    if (e.contains("curve")) {
      const Json& c = e.at("curve");
      const std::string cw = w + ".curve";
      LNZ_FIELD(bucket, int64_t, c, "bucket", cw);
      LNZ_FIELD(start, std::vector<int64_t>, c, "start", cw);
      LNZ_FIELD(mean, std::vector<double>, c, "mean_nll", cw);
      LNZ_FIELD(count, std::vector<int64_t>, c, "count", cw);
      if (mean.size() != start.size() || count.size() != start.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat(cw, ": start, mean_nll and count differ in length"));
      }
      p.curve = PositionCurve{bucket, start, mean, count};
    }
    r->perplexity.push_back(std::move(p));
  }
  // Reports before comparisons became a list held one, of "student".
  Json comparisons = list("comparisons");
  if (j.contains("comparison") && j.at("comparison").is_object()) {
    Json one = j.at("comparison");
    one["model"] = "student";
    comparisons.push_back(one);
  }
  i = 0;
  for (const Json& e : comparisons) {
    const std::string w = absl::StrCat(file, ": comparisons[", i++, "]");
    LNZ_FIELD(m, std::string, e, "model", w);
    LNZ_FIELD(tokens, int64_t, e, "tokens", w);
    LNZ_FIELD(tp, double, e, "teacher_perplexity", w);
    LNZ_FIELD(sp, double, e, "student_perplexity", w);
    LNZ_FIELD(ratio, double, e, "perplexity_ratio", w);
    LNZ_FIELD(kl, double, e, "kl", w);
    LNZ_FIELD(top1, double, e, "top1_agreement", w);
    r->comparisons.push_back(
        {m, Comparison{tokens, std::log(tp), std::log(sp), tp, sp, ratio, kl, top1}});
  }
  i = 0;
  for (const Json& e : list("attention_layers")) {
    const std::string w = absl::StrCat(file, ": attention_layers[", i++, "]");
    LNZ_FIELD(m, std::string, e, "model", w);
    LNZ_FIELD(layer, int64_t, e, "layer", w);
    LNZ_FIELD(tokens, int64_t, e, "tokens", w);
    LNZ_FIELD(mse, double, e, "mse", w);
    LNZ_FIELD(rel, double, e, "relative_error", w);
    r->attention_layers.push_back({m, LayerError{layer, tokens, mse, rel}});
  }
  for (const auto& [key, out] : {std::pair{"mqar", &r->mqar}, std::pair{"passkey", &r->passkey}}) {
    i = 0;
    for (const Json& e : list(key)) {
      absl::StatusOr<RecallEntry> entry =
          ParseRecall(e, absl::StrCat(file, ": ", key, "[", i++, "]"));
      if (!entry.ok()) return entry.status();
      out->push_back(*std::move(entry));
    }
  }
  i = 0;
  for (const Json& e : list("multiple_choice")) {
    const std::string w = absl::StrCat(file, ": multiple_choice[", i++, "]");
    LNZ_FIELD(m, std::string, e, "model", w);
    McResult mc;
    LNZ_FIELD(task, std::string, e, "task", w);
    LNZ_FIELD(shots, int64_t, e, "num_fewshot", w);
    LNZ_FIELD(questions, int64_t, e, "questions", w);
    LNZ_FIELD(acc, double, e, "acc", w);
    LNZ_FIELD(acc_norm, double, e, "acc_norm", w);
    mc.task = task;
    mc.num_fewshot = shots;
    mc.questions = questions;
    mc.acc = acc;
    mc.acc_norm = acc_norm;
    r->mc.push_back({m, std::move(mc)});
  }
  i = 0;
  for (const Json& e : list("speed")) {
    const std::string w = absl::StrCat(file, ": speed[", i++, "]");
    LNZ_FIELD(m, std::string, e, "model", w);
    LNZ_FIELD(prompt, int64_t, e, "prompt_tokens", w);
    LNZ_FIELD(decoded, int64_t, e, "decode_tokens", w);
    LNZ_FIELD(threads, int64_t, e, "threads", w);
    LNZ_FIELD(prefill, double, e, "prefill_tokens_per_second", w);
    LNZ_FIELD(decode, double, e, "decode_tokens_per_second", w);
    r->speed.push_back({m, {prompt, decoded, threads, prefill, decode}});
  }
  return absl::OkStatus();
}

#undef LNZ_FIELD

}  // namespace

absl::StatusOr<EvalReport> ReadReportJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  const Json j = Json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a JSON object"));
  }
  EvalReport r;
  if (absl::Status s = ParseReport(j, path, &r); !s.ok()) return s;
  return r;
}

absl::StatusOr<EvalReport> MergeReports(
    const std::vector<std::pair<std::string, EvalReport>>& runs) {
  if (runs.empty()) return absl::InvalidArgumentError("MergeReports: no reports to merge");
  EvalReport out;
  std::set<std::string> labels;
  // (model, task setting) pairs that already have a row: the first run wins.
  std::set<std::string> rows;
  for (const auto& [label, r] : runs) {
    if (label.empty() || label == "teacher") {
      return absl::InvalidArgumentError(
          absl::StrCat("MergeReports: label \"", label, "\" is empty or \"teacher\""));
    }
    if (!r.teacher.empty()) {
      if (out.teacher.empty()) {
        out.teacher = r.teacher;
      } else if (std::filesystem::path(out.teacher).filename() !=
                 std::filesystem::path(r.teacher).filename()) {
        return absl::InvalidArgumentError(absl::StrCat("MergeReports: run \"", label,
                                                       "\" has teacher ", r.teacher, ", not ",
                                                       out.teacher));
      }
    }
    if (labels.insert(label).second) {
      absl::StrAppend(&out.model, out.model.empty() ? "" : ", ", label);
    }
    // Appends `from`'s entries relabelled, each (model, setting) once.
    const auto take = [&](auto& into, const auto& from, const auto& setting) {
      for (auto e : from) {
        e.model = e.model == "teacher" ? e.model : label;
        if (!rows.insert(absl::StrCat(e.model, "\t", setting(e))).second) continue;
        into.push_back(std::move(e));
      }
    };
    take(out.perplexity, r.perplexity, [](const PerplexityEntry& e) { return "ppl " + e.text; });
    take(out.comparisons, r.comparisons, [](const ComparisonEntry&) { return "comparison"; });
    take(out.attention_layers, r.attention_layers,
         [](const LayerErrorEntry& e) { return absl::StrCat("layer ", e.result.layer); });
    take(out.mqar, r.mqar, [](const RecallEntry& e) {
      return absl::StrCat("mqar ", e.result.context_length, " ", e.result.num_pairs);
    });
    take(out.passkey, r.passkey, [](const RecallEntry& e) {
      return absl::StrCat("passkey ", e.result.context_length, " ", e.result.depth);
    });
    take(out.mc, r.mc, [](const McEntry& e) {
      return absl::StrCat("mc ", e.result.task, " ", e.result.num_fewshot);
    });
    // One teacher row per host setting (runs may come from different hosts).
    take(out.speed, r.speed, [](const SpeedEntry& e) {
      return absl::StrCat("speed ", e.result.threads, " ", e.result.prompt_tokens);
    });
  }
  return out;
}

}  // namespace linearize::eval
