"""Cohort stage: the cohort folder contract and the builders that fill it."""
