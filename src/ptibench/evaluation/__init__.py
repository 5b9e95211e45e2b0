"""Evaluation: sampling, the metric functions, a case's metrics and the context-leakage probe.
Imports only the foundation, the tiny world and models."""
