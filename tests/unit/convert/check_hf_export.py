#!/usr/bin/env python3
"""Checks a directory written by linearize's Hugging Face export with the
Hugging Face libraries themselves (run with the project venv).

  check_hf_export.py DIR [--tokens CASES.json] [--gguf FILE] [--logits REF]
                         [--peft-base HF_DIR]

--tokens     {"cases": [{"text", "ids", "ids_with_special"}]}: transformers'
             AutoTokenizer on DIR must give exactly these ids (ours).
--gguf       DIR's config.json, read by AutoConfig, must agree with the config
             transformers itself derives from the GGUF file's metadata.
--logits     a safetensors file with input_ids [T] and logits [T, V] that our
             model computed with softmax attention on DIR's weights:
             transformers' model from DIR must give the same logits (the
             weights' orientation, RoPE scaling and tied embeddings are right).
--peft-base  the unmerged base model: peft loads DIR/adapter onto it, and
             merging must give DIR's (merged) projection weights.

Prints one line per check; exit status 0 when all pass.
"""

import argparse
import json
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

failures = []


def check(name, ok, detail=""):
    print(("ok   - " if ok else "FAIL - ") + name + ("" if ok else f": {detail}"))
    if not ok:
        failures.append(name)


def check_tokens(out_dir: Path, cases_file: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out_dir))
    cases = json.loads(cases_file.read_text())["cases"]
    bad = []
    for c in cases:
        plain = tok(c["text"], add_special_tokens=False)["input_ids"]
        special = tok(c["text"])["input_ids"]
        if plain != c["ids"] or special != c["ids_with_special"]:
            bad.append((c["text"][:40], plain[:12], c["ids"][:12], special[:4],
                        c["ids_with_special"][:4]))
    check(f"AutoTokenizer({type(tok).__name__}) encodes {len(cases)} texts as ours", not bad,
          repr(bad[:2]))
    # The chat template renders with transformers too.
    if tok.chat_template:
        text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                       add_generation_prompt=True)
        check("chat template renders", "Hi" in text, text)


def check_config(out_dir: Path, gguf: Path) -> None:
    from transformers import AutoConfig

    ours = AutoConfig.from_pretrained(str(out_dir))
    theirs = AutoConfig.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    bad = []
    for key in ("model_type", "vocab_size", "hidden_size", "intermediate_size",
                "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                "max_position_embeddings", "tie_word_embeddings", "bos_token_id",
                "eos_token_id"):
        a, b = getattr(ours, key, None), getattr(theirs, key, None)
        if a != b:
            bad.append((key, a, b))
    for key in ("rms_norm_eps",):
        a, b = getattr(ours, key), getattr(theirs, key)
        if not math.isclose(a, b, rel_tol=1e-6):
            bad.append((key, a, b))
    ta = ours.rope_parameters["rope_theta"]
    tb = theirs.rope_parameters["rope_theta"]
    if not math.isclose(ta, tb, rel_tol=1e-6):
        bad.append(("rope_theta", ta, tb))
    check("config.json agrees with transformers' GGUF config", not bad, repr(bad))


def load_model(path: str):
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def check_logits(out_dir: Path, ref: Path) -> None:
    import torch
    from safetensors.torch import load_file

    r = load_file(str(ref))
    model = load_model(str(out_dir))
    with torch.no_grad():
        logits = model(r["input_ids"].unsqueeze(0)).logits[0]
    want = r["logits"]
    err = float((logits - want).abs().max() / want.abs().max())
    check(f"transformers' logits from the exported weights match ours (rel err {err:.2e})",
          err < 1e-4, f"{err}")
    rope = getattr(model.config, "rope_parameters", None) or {}
    print(f"     rope: {rope}")


def check_peft(out_dir: Path, base_dir: Path) -> None:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file

    adapter_file = load_file(str(out_dir / "adapter" / "adapter_model.safetensors"))
    base = load_model(str(base_dir))
    model = PeftModel.from_pretrained(base, str(out_dir / "adapter"))
    from peft import get_peft_model_state_dict

    loaded = get_peft_model_state_dict(model)
    same = set(loaded) == set(adapter_file) and all(
        torch.equal(loaded[k].float(), adapter_file[k].float()) for k in adapter_file)
    check(f"peft loads all {len(adapter_file)} adapter tensors by name", same,
          f"{sorted(set(loaded) ^ set(adapter_file))[:4]}")
    merged = model.merge_and_unload().state_dict()
    weights = load_file(str(out_dir / "model.safetensors"))
    worst = 0.0
    count = 0
    for name, w in weights.items():
        if any(p in name for p in ("q_proj.weight", "k_proj.weight", "v_proj.weight",
                                   "o_proj.weight")):
            worst = max(worst, float((merged[name] - w).abs().max()))
            count += 1
    check(f"peft's merge_and_unload gives the exported projections ({count}, max diff {worst:.1e})",
          count > 0 and worst < 1e-5, f"{worst}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("dir", type=Path)
    p.add_argument("--tokens", type=Path)
    p.add_argument("--gguf", type=Path)
    p.add_argument("--logits", type=Path)
    p.add_argument("--peft-base", type=Path)
    a = p.parse_args()
    import torch

    torch.set_num_threads(1)
    if a.tokens:
        check_tokens(a.dir, a.tokens)
    if a.gguf:
        check_config(a.dir, a.gguf)
    if a.logits:
        check_logits(a.dir, a.logits)
    if a.peft_base:
        check_peft(a.dir, a.peft_base)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
