"""RAFT data: RAFT rows (golden + distractor documents, question, answer, optional cot) built from
context-QA files (build.py), and `tunelab raft build` (commands.py)."""
