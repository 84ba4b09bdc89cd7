"""Dagster-facing code: the job, its step ops, its executor and rerun detection."""
