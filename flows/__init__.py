"""Prefect flows: one file per operation, each reading like the runbook it automates."""
