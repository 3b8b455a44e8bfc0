"""Predict stage: FMM_TC, its unimodal variants and the classical baselines."""
