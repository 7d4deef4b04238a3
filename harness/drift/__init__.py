"""Drift: schema snapshots and diffs, coverage, validation, behaviour comparison and re-recording."""
