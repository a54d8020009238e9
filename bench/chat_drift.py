"""Chat-answer repetition drift: teacher vs Lizard student (CPU, greedy).

For each prompt in scripts/chat-prompts.txt (first 8 at most), runs
  linearize generate [-m MODEL] --chat -t 0 -n 200 --stats -p PROMPT
once with the default teacher (SmolLM2-135M-Instruct Q4_1) and once with the
student delta (deltas/smollm2-135m-lizard), sequentially, and computes on
whitespace tokens of each answer:
  distinct2/3        unique n-grams / total n-grams over the whole answer
  distinct2/3_half2  the same over the second half of the words
  first_rep8         first word index at which an 8-word sequence repeats an
                     earlier one (= word count if none)
  first_rep8_nonum   the same with digit runs masked ("9." == "10."), so
                     numbered-list loops count as repeats
  stopped            generation ended on its own (finish=stop, < 200 tokens)
Writes bench/results/chat_drift_cpu.json and prints a Markdown table.
Usage (from the repo root): .venv/bin/python bench/chat_drift.py [STUDENT [JSON]]
(another student directory or delta, and where its JSON goes).
"""
import json, re, subprocess, sys

CLI = "build/services/cli/linearize"
MODELS = {"teacher": [], "student": ["-m", "deltas/smollm2-135m-lizard"]}
N, OUT = 200, "bench/results/chat_drift_cpu.json"


def distinct(words, n):
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def first_rep(words, n=8):
    seen = set()
    for i in range(len(words) - n + 1):
        g = tuple(words[i:i + n])
        if g in seen:
            return i
        seen.add(g)
    return len(words)


def metrics(text, gen_tokens, finish):
    w = text.split()
    h = w[len(w) // 2:]
    return {"words": len(w), "gen_tokens": gen_tokens, "finish": finish,
            "stopped": finish == "stop" and gen_tokens < N,
            "distinct2": distinct(w, 2), "distinct3": distinct(w, 3),
            "distinct2_half2": distinct(h, 2), "distinct3_half2": distinct(h, 3),
            "first_rep8": first_rep(w),
            "first_rep8_nonum": first_rep([re.sub(r"\d+", "#", x) for x in w])}


def main():
    global OUT
    if len(sys.argv) > 1:
        MODELS["student"] = ["-m", sys.argv[1]]
    if len(sys.argv) > 2:
        OUT = sys.argv[2]
    prompts = [l.strip() for l in open("scripts/chat-prompts.txt") if l.strip()][:8]
    rows = []
    for p in prompts:
        for name, extra in MODELS.items():
            cmd = [CLI, "generate", *extra, "--chat", "-t", "0", "-n", str(N), "--stats", "-p", p]
            r = subprocess.run(cmd, capture_output=True, text=True, check=True)
            m = re.search(r"(\d+) generated, finish=(\w+)", r.stderr)
            rows.append({"prompt": p, "model": name, "command": cmd, "text": r.stdout,
                         "stats": r.stderr.strip(),
                         "metrics": metrics(r.stdout, int(m.group(1)), m.group(2))})
            print(f"{name:8s} {p[:40]!r}: {rows[-1]['metrics']}", file=sys.stderr)
    json.dump(rows, open(OUT, "w"), indent=2)
    keys = ["words", "gen_tokens", "distinct2", "distinct3", "distinct2_half2",
            "distinct3_half2", "first_rep8", "first_rep8_nonum", "stopped"]
    print("| prompt | model | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)
    for r in rows:
        print(f"| {r['prompt'][:40]} | {r['model']} | "
              + " | ".join(fmt(r["metrics"][k]) for k in keys) + " |")
    for name in MODELS:
        ms = [r["metrics"] for r in rows if r["model"] == name]
        print(f"| **average** | {name} | "
              + " | ".join(fmt(sum(float(m[k]) for m in ms) / len(ms)) for k in keys) + " |")


if __name__ == "__main__":
    main()
