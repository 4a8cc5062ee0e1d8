"""The search engine: one search (search.py) and its modes -- the level DP (levels.py), refinement
(refine.py), mode teacher (teacher.py, pairs.py), the guarded multistep default (guard.py) -- how
samples combine (aggregation.py), model calls on batched rows (runner.py), per-sample inputs
(inputs.py), options and their checks (options.py), the latent elements costs compare
(selection.py), memory estimates (memory.py), checkpoints (checkpoint.py), rank sharding
(distributed.py), velocity checks (velocity.py), stats."""
