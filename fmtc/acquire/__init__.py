"""Acquire stage: DataLad clones, gets and drops; atlas downloads."""
