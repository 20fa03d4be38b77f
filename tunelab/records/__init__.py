"""Reading datasets: file formats, adapters to canonical columns, quarantine of malformed records.

- `config.py`: the `dataset:` block of a recipe (pydantic only, imports without polars)
- `adapters.py`: one source record (alpaca, chat messages, dpo, hh-rlhf, raft, text, field map) to canonical fields
- `loader.py`: files to a canonical frame plus a quarantine; `read == rows + quarantined`, always
"""
