"""What is done with results, without pytest: baselines and their check, the trade-off table, the
knee, plain tables, results.json and the rendered reports."""
