"""The search engine: the level loop (search.py), model calls on batched rows (runner.py),
per-sample inputs (inputs.py), options and their checks (options.py), the latent elements costs
compare (selection.py), checkpoints (checkpoint.py), rank sharding (distributed.py), stats."""
