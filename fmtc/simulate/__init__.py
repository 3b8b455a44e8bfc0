"""The embedded simulated cohort: a generator that knows its planted truth."""
