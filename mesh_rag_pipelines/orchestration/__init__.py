"""Dagster wiring: assets, checks, jobs, sensors and schedules, all generated from contracts."""
