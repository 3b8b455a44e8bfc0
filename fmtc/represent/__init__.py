"""Representations of a subject's fMRI: the BrainLM foundation model and its checkpoint I/O."""
