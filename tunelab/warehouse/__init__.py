"""tunelab.warehouse: one DuckDB file holding curations, decisions, runs, train logs and evaluations.

`store` is the API other components call (every ingest is one transaction on a short-lived
connection; reads are read-only with external access disabled); `commands` registers
`tunelab sql`, `tunelab runs` and `tunelab export`.
"""
