#include "services/cli/eval_command.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/eval/multiple_choice.h"
#include "common/eval/recall.h"
#include "common/eval/report.h"
#include "common/eval/speed.h"
#include "common/eval/token_scores.h"
#include "common/model/load.h"
#include "common/runtime/perplexity.h"
#include "services/cli/eval_client.h"

namespace linearize::cli {
namespace {

const std::set<std::string> kTasks = {"ppl", "kl", "recall", "passkey", "mc", "speed"};

struct Subject {
  std::string label;  // "teacher", "student" or "model"
  model::LoadedModel loaded;
};

absl::StatusOr<std::string> ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

absl::Status Annotate(const absl::Status& st, std::string_view what) {
  return absl::Status(st.code(), absl::StrCat(std::string(what), ": ", st.message()));
}

}  // namespace

CLI::App* AddEvalCommand(CLI::App& app, EvalArgs& args) {
  CLI::App* cmd = app.add_subcommand(
      "eval", "Evaluate a model (and its teacher): perplexity, KL, recall, multiple choice, speed");
  cmd->add_option("model", args.model,
                  "Model: a .gguf file or a Hugging Face directory (default: the embedded "
                  "SmolLM2-135M-Instruct)");
  cmd->add_option("--teacher", args.teacher, "Teacher model to compare with (same vocabulary)");
  cmd->add_option("--tasks", args.tasks,
                  "Comma-separated: ppl,kl,recall,passkey,mc,speed (kl: KL, top-1 and "
                  "per-layer attention error against --teacher)")
      ->delimiter(',');
  cmd->add_option("--out,-o", args.out, "Output folder for report.json, report.md and plots");
  cmd->add_option("--text", args.texts, "Text file(s) for ppl and kl (default: english.txt)");
  cmd->add_option("--mc-tasks", args.mc_files, "JSONL multiple-choice task files")
      ->delimiter(',');
  cmd->add_option("--fewshot", args.fewshot, "Examples put before each question")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--mc-limit", args.mc_limit, "Questions per task (0: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--chunk", args.chunk, "Tokens per scored chunk for the position curve and KL");
  cmd->add_option("--bucket", args.bucket, "Positions per bucket of the perplexity curve");
  cmd->add_option("--recall-lengths", args.recall_lengths, "MQAR context lengths")
      ->delimiter(',');
  cmd->add_option("--recall-pairs", args.recall_pairs, "MQAR numbers of key-value pairs")
      ->delimiter(',');
  cmd->add_option("--recall-samples", args.recall_samples, "MQAR samples per setting");
  cmd->add_option("--passkey-lengths", args.passkey_lengths, "Passkey prompt lengths (tokens)")
      ->delimiter(',');
  cmd->add_option("--passkey-depths", args.passkey_depths, "Passkey depths in [0, 1]")
      ->delimiter(',');
  cmd->add_option("--passkey-samples", args.passkey_samples, "Passkey samples per setting");
  cmd->add_option("--speed-prompt", args.speed_prompt, "Prompt tokens for the speed test");
  cmd->add_option("--speed-decode", args.speed_decode, "Decoded tokens for the speed test");
  cmd->add_option("--seed", args.seed, "Seed for the synthetic tasks");
  cmd->add_option("--server", args.server,
                  "Run on linearize-evaluator at host:port (model and file paths under its "
                  "artifact root) instead of locally");
  cmd->add_option("--token", args.token, "Bearer token for --server")->envname("LINEARIZE_TOKEN");
  cmd->add_option("--tls-ca", args.tls_ca, "PEM CA of --server's certificate: use TLS")
      ->envname("LINEARIZE_TLS_CA");
  cmd->add_option("--merge", args.merge,
                  "LABEL=REPORT: join earlier runs (report.json or its folder), each one "
                  "student beside the same teacher, into one report with every model on the "
                  "same axes; evaluates nothing");
  return cmd;
}

namespace {

absl::Status MergeRuns(const EvalArgs& args) {
  std::vector<std::pair<std::string, eval::EvalReport>> runs;
  for (const std::string& spec : args.merge) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--merge: expected LABEL=REPORT, got \"", spec, "\""));
    }
    std::string path = spec.substr(eq + 1);
    if (!path.ends_with(".json")) path += "/report.json";
    absl::StatusOr<eval::EvalReport> r = eval::ReadReportJson(path);
    if (!r.ok()) return Annotate(r.status(), "--merge");
    runs.emplace_back(spec.substr(0, eq), *std::move(r));
  }
  absl::StatusOr<eval::EvalReport> merged = eval::MergeReports(runs);
  if (!merged.ok()) return Annotate(merged.status(), "--merge");
  if (absl::Status st = eval::WriteReport(*merged, args.out); !st.ok()) return st;
  std::cout << eval::ReportMarkdown(*merged);
  std::cerr << "wrote " << args.out << "/report.json, report.md and plots\n";
  return absl::OkStatus();
}

}  // namespace

absl::Status RunEval(const EvalArgs& args) {
  if (!args.merge.empty()) return MergeRuns(args);
  if (!args.server.empty()) return RunEvalOnServer(args);
  std::set<std::string> tasks;
  for (const std::string& t : args.tasks) {
    if (!kTasks.contains(t)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tasks: unknown task \"", t, "\" (ppl,kl,recall,passkey,mc,speed)"));
    }
    tasks.insert(t);
  }
  if (tasks.contains("kl") && args.teacher.empty()) {
    return absl::InvalidArgumentError("--tasks kl needs --teacher");
  }
  std::string path = args.model;
  if (path.empty()) {
    absl::StatusOr<std::string> found = model::FindDefaultModel();
    if (!found.ok()) return found.status();
    path = *found;
  }
  // The teacher first, so that tables and plots list it first.
  std::vector<Subject> subjects;
  for (const auto& [label, p] : std::vector<std::pair<std::string, std::string>>{
           {"teacher", args.teacher}, {args.teacher.empty() ? "model" : "student", path}}) {
    if (p.empty()) continue;
    std::cerr << "loading " << label << " " << p << "\n";
    absl::StatusOr<model::LoadedModel> loaded = model::LoadModel(p);
    if (!loaded.ok()) return loaded.status();
    subjects.push_back({label, *std::move(loaded)});
  }
  const tokenizer::Tokenizer* tok = subjects.back().loaded.tokenizer.get();
  if (tok == nullptr) tok = subjects.front().loaded.tokenizer.get();
  const bool needs_tokenizer = tasks.contains("ppl") || tasks.contains("kl") ||
                               tasks.contains("passkey") || tasks.contains("mc");
  if (tok == nullptr && needs_tokenizer) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": has no tokenizer"));
  }

  eval::EvalReport report;
  report.model = path;
  report.teacher = args.teacher;
  std::vector<std::string> texts = args.texts;
  if (texts.empty()) texts.push_back(std::string(LINEARIZE_EVAL_DATA_DIR) + "/text/english.txt");
  std::vector<std::vector<int32_t>> text_ids;
  if (tasks.contains("ppl") || tasks.contains("kl")) {
    for (const std::string& t : texts) {
      absl::StatusOr<std::string> text = ReadText(t);
      if (!text.ok()) return text.status();
      text_ids.push_back(tok->Encode(*text, /*add_special_tokens=*/true));
    }
  }

  for (const Subject& s : subjects) {
    const model::LlamaModel& m = *s.loaded.model;
    const int64_t context = m.config().max_position_embeddings;
    if (tasks.contains("ppl")) {
      for (size_t i = 0; i < texts.size(); ++i) {
        std::cerr << s.label << ": perplexity on " << texts[i] << "\n";
        absl::StatusOr<runtime::PerplexityResult> ppl = runtime::Perplexity(m, text_ids[i]);
        if (!ppl.ok()) return Annotate(ppl.status(), texts[i]);
        absl::StatusOr<eval::TokenNll> nll =
            eval::ScoreTokens(m, text_ids[i], std::min(args.chunk, context));
        if (!nll.ok()) return Annotate(nll.status(), texts[i]);
        absl::StatusOr<eval::PositionCurve> curve = eval::CurveByPosition(*nll, args.bucket);
        if (!curve.ok()) return Annotate(curve.status(), "--bucket");
        report.perplexity.push_back(
            {s.label, std::filesystem::path(texts[i]).filename().string(), *ppl, *curve});
      }
    }
    if (tasks.contains("recall")) {
      for (int64_t pairs : args.recall_pairs) {
        for (int64_t len : args.recall_lengths) {
          if (len > eval::RecallContextLimit(m)) {
            std::cerr << s.label << ": MQAR length " << len << " skipped (context " << context
                      << ")\n";
            continue;
          }
          eval::MqarOptions o;
          o.context_length = len;
          o.num_pairs = pairs;
          o.num_samples = args.recall_samples;
          o.seed = args.seed;
          o.pool = eval::MqarTokenPool(m, s.loaded.tokenizer.get());
          if (s.loaded.tokenizer) {
            o.bos = s.loaded.tokenizer->bos_id();
            eval::SetMqarSeparators(*s.loaded.tokenizer, &o);
          }
          if (absl::Status fits = eval::MakeMqarSample(o, 0).status(); !fits.ok()) {
            std::cerr << s.label << ": MQAR skipped: " << fits.message() << "\n";
            continue;
          }
          std::cerr << s.label << ": MQAR length " << len << ", " << pairs << " pairs\n";
          absl::StatusOr<eval::RecallResult> r = eval::EvaluateMqar(m, o);
          if (!r.ok()) return Annotate(r.status(), "MQAR");
          report.mqar.push_back({s.label, *r});
        }
      }
    }
    if (tasks.contains("passkey")) {
      for (double depth : args.passkey_depths) {
        for (int64_t len : args.passkey_lengths) {
          if (len + 32 > eval::RecallContextLimit(m)) {
            std::cerr << s.label << ": passkey length " << len << " skipped (context "
                      << context << ")\n";
            continue;
          }
          eval::PasskeyOptions o;
          o.length = len;
          o.depth = depth;
          o.num_samples = args.passkey_samples;
          o.seed = args.seed;
          std::cerr << s.label << ": passkey length " << len << ", depth " << depth << "\n";
          absl::StatusOr<eval::RecallResult> r = eval::EvaluatePasskey(m, *tok, o);
          if (!r.ok()) return Annotate(r.status(), "passkey");
          report.passkey.push_back({s.label, *r});
        }
      }
    }
    if (tasks.contains("mc")) {
      std::vector<std::string> files = args.mc_files;
      if (files.empty()) {
        for (const char* name : {"arithmetic", "world_facts", "word_sense"}) {
          files.push_back(absl::StrCat(LINEARIZE_EVAL_DATA_DIR, "/eval/tasks/", name, ".jsonl"));
        }
      }
      for (const std::string& f : files) {
        absl::StatusOr<eval::McTask> task = eval::LoadMcTask(f);
        if (!task.ok()) return task.status();
        std::cerr << s.label << ": multiple choice " << task->name << "\n";
        eval::McOptions o;
        o.num_fewshot = args.fewshot;
        o.limit = args.mc_limit;
        absl::StatusOr<eval::McResult> r = eval::EvaluateMc(m, *tok, *task, o);
        if (!r.ok()) return r.status();
        report.mc.push_back({s.label, *r});
      }
    }
    if (tasks.contains("speed")) {
      eval::SpeedOptions o;
      o.prompt_tokens = args.speed_prompt;
      o.decode_tokens = args.speed_decode;
      o.seed = args.seed;
      std::cerr << s.label << ": speed\n";
      absl::StatusOr<eval::SpeedResult> r = eval::MeasureSpeed(m, o);
      if (!r.ok()) return Annotate(r.status(), "speed");
      report.speed.push_back({s.label, *r});
    }
  }
  if (tasks.contains("kl")) {
    const model::LlamaModel& teacher = *subjects.front().loaded.model;
    const model::LlamaModel& student = *subjects.back().loaded.model;
    std::vector<int32_t> all;
    for (const auto& ids : text_ids) all.insert(all.end(), ids.begin(), ids.end());
    const int64_t context = std::min(teacher.config().max_position_embeddings,
                                     student.config().max_position_embeddings);
    std::cerr << "teacher vs student, and attention output by layer\n";
    absl::StatusOr<eval::ComparisonWithLayers> c =
        eval::CompareModelsAndLayers(teacher, student, all, std::min(args.chunk, context));
    if (!c.ok()) return Annotate(c.status(), "kl");
    report.comparisons.push_back({"student", c->comparison});
    for (const eval::LayerError& e : c->layers) report.attention_layers.push_back({"student", e});
  }
  if (absl::Status st = eval::WriteReport(report, args.out); !st.ok()) return st;
  std::cout << eval::ReportMarkdown(report);
  std::cerr << "wrote " << args.out << "/report.json, report.md and plots\n";
  return absl::OkStatus();
}

}  // namespace linearize::cli
