"""Summarises scripts/gpu-smollm2's runs: one Markdown table (teacher, each
student, the baseline) from each run's convert.log and eval/report.json, and
prints the recipe of the best student (lowest validation perplexity among
the hybrids). Usage: smollm2_summary.py RUNS_DIR SUMMARY_MD"""
import json
import os
import re
import sys

runs, summary = sys.argv[1], sys.argv[2]
DONE = re.compile(
    r"attention MSE (\S+) -> (\S+)\n\s+perplexity: teacher (\S+), student (\S+) after stage 1, "
    r"(\S+) after stage 2\n\s+(\d+) tokens in (\S+) \((\d+) tokens/s overall\)")
rows, teacher = [], {}
for recipe in ("lolcats", "lizard", "linear"):
    log = os.path.join(runs, recipe, "convert.log")
    if not os.path.exists(log):
        continue
    m = DONE.search(open(log, errors="replace").read())
    row = {"recipe": recipe, "done": bool(m)}
    if m:
        row.update(mse0=float(m[1]), mse1=float(m[2]), teacher_val=float(m[3]),
                   stage1_val=float(m[4]), val=float(m[5]), tokens=int(m[6]), time=m[7],
                   tps=int(m[8]))
        teacher["val"] = row["teacher_val"]
    report = os.path.join(runs, recipe, "eval", "report.json")
    if os.path.exists(report):
        r = json.load(open(report))
        for p in r.get("perplexity", []):
            key = "english" if "english" in p["text"] else "heldout"
            (teacher if p["model"] == "teacher" else row)[key] = p["perplexity"]
        c = (r.get("comparisons") or [r.get("comparison", {})])[0]
        row["top1"], row["kl"] = c.get("top1_agreement"), c.get("kl")
    rows.append(row)

def f(x, spec=".2f"):
    return "-" if x is None else format(x, spec)

lines = ["| model | tokens | wall time | tokens/s | attention MSE | val ppl (stage 1 -> 2) "
         "| held-out ppl | english.txt ppl | top-1 agreement | KL |",
         "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
         f"| teacher (SmolLM2-135M-Instruct Q4_1) | - | - | - | - | {f(teacher.get('val'))} "
         f"| {f(teacher.get('heldout'))} | {f(teacher.get('english'))} | 1 | 0 |"]
for r in rows:
    if not r["done"]:
        lines.append(f"| {r['recipe']} | not finished | | | | | | | | |")
        continue
    mse = "-" if r["recipe"] == "linear" else f"{r['mse0']:.3g} -> {r['mse1']:.3g}"
    lines.append(f"| {r['recipe']} | {r['tokens']:,} | {r['time']} | {r['tps']:,} | {mse} "
                 f"| {f(r['stage1_val'])} -> {f(r['val'])} | {f(r.get('heldout'))} "
                 f"| {f(r.get('english'))} | {f(r.get('top1'), '.3f')} | {f(r.get('kl'), '.3f')} |")
open(summary, "w").write("\n".join(lines) + "\n")
hybrids = [r for r in rows if r["done"] and r["recipe"] != "linear"]
print(min(hybrids, key=lambda r: r["val"])["recipe"] if hybrids else "")
