"""Prefect tasks shared by the flows, grouped by the system they touch."""
