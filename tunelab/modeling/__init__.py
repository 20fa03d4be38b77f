"""Models for training and evaluation alike: loading (4-bit, LoRA), chat rendering, offline aliases.

- `config.py`: the model settings shared by `train:` (base model, quantization, dtype)
- `loading.py`: tokenizer + model loading, LoRA config, device-dependent trainer arguments
- `chat.py`: curated rows to chat messages and prompts, rendered by the tokenizer's template
- `tiny.py`: the offline tiny Llama (`tunelab-tiny`) the demo and tests train
- `resolve.py`: "base" / "sft" / "dpo" / a run id / a path to a ready model for generation
"""
