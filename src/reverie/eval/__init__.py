"""Evaluation: metrics, QA scoring, benchmarks and their results."""
