"""`tunelab doctor`: what interrupted work left in a workspace, and its repair.

- `checks.py`: the findings (pending or orphaned curation folders, curations whose files are gone, runs
  stuck in `running` whose process is gone, finished runs whose adapter is gone) and their repairs
- `commands.py`: the CLI command (imports nothing heavy until it runs)
"""
