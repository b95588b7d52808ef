"""Scoring predictions on the affective benchmarks: label extraction from answers and the field's metrics."""
