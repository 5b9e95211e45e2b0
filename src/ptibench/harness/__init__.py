"""The pytest layer (plugin, options, session, fixture, workers) and the `ptibench` command."""
