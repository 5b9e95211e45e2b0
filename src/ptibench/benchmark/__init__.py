"""The lr-grid benchmark as installed cases: `pytest --pyargs ptibench.benchmark --lr-grid` runs
it from any project that depends on ptibench, on the tiny world and concepts the package ships
(baselines: <rootdir>/baselines, or --ptibench-baselines DIR)."""
