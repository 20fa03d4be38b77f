"""Generation with a LoRA adapter merged into the base weights vs left as a PeftModel, on SmolLM2-135M.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/merged_adapter_bench.py [--prompts 16] [--tokens 48]

Why: modeling.resolve.load_for_generation merges an adapter into an unquantized base before evaluation
generates (W + BA folded once, so each step is one matmul per projection instead of three). This measures
the three models in one process on the same batch, forcing the same number of new tokens (min_new_tokens)
so answer length cannot skew the ratio, and checks that merged greedy decoding gives the same tokens.
The adapter is r 16 on every projection (the demo recipe's), random B scaled to 0.01 so it changes logits.
The base is timed twice (warm-up first) so the ratios compare warm runs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from tunelab.modeling.smollm import build_smollm_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()
    torch.manual_seed(0)
    folder = build_smollm_model(
        Path(tempfile.mkdtemp(prefix="merge-bench-")) / "smollm2-135m", show_progress=False
    )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "left"
    chats = [
        [{"role": "user", "content": f"Give me advice number {i} about studying."}]
        for i in range(args.prompts)
    ]
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    batch = tokenizer(texts, return_tensors="pt", padding=True)

    def generate(model: torch.nn.Module) -> tuple[float, torch.Tensor]:
        started = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                **batch, max_new_tokens=args.tokens, min_new_tokens=args.tokens, do_sample=False
            )
        return time.perf_counter() - started, out

    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    generate(base)
    base_s, _ = generate(base)
    config = LoraConfig(r=16, lora_alpha=32, init_lora_weights=False,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])  # fmt: skip
    adapted = get_peft_model(AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32), config).eval()
    for name, parameter in adapted.named_parameters():
        if "lora_B" in name:
            parameter.data *= 0.01
    unmerged_s, unmerged = generate(adapted)
    merged_s, merged = generate(adapted.merge_and_unload().eval())
    print(
        f"{args.prompts} prompts x {args.tokens} new tokens: base {base_s:.1f} s, adapter unmerged {unmerged_s:.1f} s, "
        f"merged {merged_s:.1f} s; unmerged/merged {unmerged_s / merged_s:.2f}x, merged/base {merged_s / base_s:.2f}x; "
        f"same greedy tokens: {torch.equal(unmerged, merged)}"
    )


if __name__ == "__main__":
    main()
