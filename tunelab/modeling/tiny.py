"""A tiny Llama-style causal LM built offline from a dataset's own texts (demo, tests, CPU-only machines).

No hub access here, so the tokenizer is trained on the recipe's data and the weights start random with a
fixed seed: the same texts always give the same model files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# `{% generation %}` marks what the assistant says, so trl can train on it alone (assistant_only_loss).
# The assistant turn ends with EOS so a trained model learns to stop; the prompt rendered with
# add_generation_prompt is a strict prefix of the full conversation (DPO needs that).
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>\n{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}"
    "{% else %}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

MARKER_FILE = "tunelab_tiny.json"


def _fingerprint(texts: list[str], vocab_size: int, hidden_size: int, layers: int) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    digest.update(f"{vocab_size}:{hidden_size}:{layers}:{CHAT_TEMPLATE}".encode())
    return digest.hexdigest()[:16]


def build_tiny_model(
    out_dir: Path,
    texts: list[str],
    vocab_size: int = 1000,
    hidden_size: int = 128,
    layers: int = 2,
    seed: int = 0,
    pretrain_steps: int = 200,
) -> Path:
    """Train a byte-level BPE tokenizer on `texts` and save a random-init Llama beside it.

    Built once per `out_dir`: adapters trained earlier must keep matching their base, so a later call with
    other texts (a re-curated dataset) reuses the existing model instead of rebuilding it.
    """
    out_dir = Path(out_dir)
    marker = out_dir / MARKER_FILE
    if marker.is_file():
        return out_dir
    fingerprint = _fingerprint(texts, vocab_size, hidden_size, layers)

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    # byte-level: every Hangul syllable round-trips even when BPE never saw it (no <unk> for Korean)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([t for t in texts if t], trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        additional_special_tokens=ROLE_TOKENS,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 2048

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if pretrain_steps > 0:
        pretrain(model, tokenizer, texts, pretrain_steps, seed)
    # build beside the target and rename, so a crash never leaves a half-written model that looks cached
    staging = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    marker_data = {"fingerprint": fingerprint, "texts": len(texts), "pretrain_steps": pretrain_steps}
    (staging / MARKER_FILE).write_text(json.dumps(marker_data))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if out_dir.exists() and not marker.is_file():
        shutil.rmtree(out_dir)
    try:
        os.replace(staging, out_dir)
    except OSError:  # another process finished first: keep its model
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def pretrain(model: Any, tokenizer: Any, texts: list[str], steps: int, seed: int, block: int = 64) -> None:
    """A short full-weight language-model pass over the texts, standing in for a real model's pre-training.

    Without it the embeddings stay random and frozen under LoRA, and SFT can barely move the loss; with it
    the tiny model behaves like a (very small) pretrained base: it knows the words, not the chat format.
    A plain loop on purpose: this builds a fixture model, it is not the product's training path.
    """
    import torch

    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False).input_ids)
        ids.append(tokenizer.eos_token_id)
    usable = len(ids) // block * block
    if usable < block:
        return
    blocks = torch.tensor(ids[:usable]).view(-1, block)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
    model.train()
    for _ in range(steps):
        batch = blocks[torch.randint(len(blocks), (16,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
