"""Evaluate stage: splits, model selection, metrics, intervals and permutation tests."""
