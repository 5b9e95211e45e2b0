"""Running cases: the result cache, run_case / run_cases, the batched grid at the cache level,
checkpointed curves, and the Ray executor that runs cases as tasks on a cluster."""
