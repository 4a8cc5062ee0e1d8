"""The search engine: the level loop (search.py), model calls on batched rows (runner.py),
per-sample inputs (inputs.py) and input checks (validate.py)."""
