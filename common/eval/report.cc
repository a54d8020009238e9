#include "common/eval/report.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>

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
  if (r.comparison) {
    const Comparison& c = *r.comparison;
    j["comparison"] = {{"tokens", c.tokens},
                       {"teacher_perplexity", c.teacher_perplexity},
                       {"student_perplexity", c.student_perplexity},
                       {"perplexity_ratio", c.perplexity_ratio},
                       {"kl", c.kl},
                       {"top1_agreement", c.top1_agreement}};
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
  if (r.comparison) {
    const Comparison& c = *r.comparison;
    absl::StrAppend(&md, "## Teacher vs student\n\n| tokens | teacher ppl | student ppl | "
                         "ratio | KL(teacher‖student) | top-1 agreement |\n"
                         "|---:|---:|---:|---:|---:|---:|\n",
                    absl::StrFormat("| %d | %.3f | %.3f | %.4f | %.4f | %.4f |\n\n", c.tokens,
                                    c.teacher_perplexity, c.student_perplexity,
                                    c.perplexity_ratio, c.kl, c.top1_agreement));
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

  std::vector<PlotSeries> ppl;
  for (const PerplexityEntry& e : r.perplexity) {
    if (!e.curve) continue;
    PlotSeries s{e.model, {}, {}};
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

}  // namespace linearize::eval
