"""Preprocess stage: NIfTI to region time series, robust scaling, windows, connectivity."""
