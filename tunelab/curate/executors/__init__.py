"""Where the curation stages run: `local` is pipeline.run_stages in this process; `ray` (ray.py) runs the
same stage functions over a Ray cluster. `curate.executor` picks one; the decisions are the same."""
