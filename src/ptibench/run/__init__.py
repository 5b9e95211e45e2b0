"""Running cases: the result cache, run_case / run_cases, the batched grid at the cache level and
checkpointed curves."""
