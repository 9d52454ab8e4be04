"""Reproducible performance and decision-quality benchmarks (scripts, not tests)."""
