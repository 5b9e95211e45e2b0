"""Studies that plug into the reports through ptibench.results.sections."""
