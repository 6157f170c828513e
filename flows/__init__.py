"""Prefect flows: one file per operation, each reading like the runbook it automates.

Importing the package sets up the flows' logging (app/observability/logging_setup.py): secrets scrubbed from every record,
Prefect's API handler included, and console lines that carry the flow run id (JSON with LOG_JSON=true).
Prefect's own configuration is applied first; later calls to it are incremental and keep ours.
With TRACING_ENABLED=true it also sets the process's OpenTelemetry tracer provider (app/observability/tracing.py), which Prefect
3's own run telemetry uses: every flow run and task run becomes a span (`prefect.run.id` = the run id), task runs
children of their flow run.
"""

from prefect.logging.configuration import ensure_logging_setup

from app.observability.logging_setup import configure_flow_logging
from app.observability.tracing import configure_tracing
from app.settings import SettingsError, load_settings

ensure_logging_setup()
try:
    _settings = load_settings()
except SettingsError:
    pass  # no run can start with such settings: the CLI says so in one line (flows/cli.py), a run fails naming it
else:
    configure_flow_logging(_settings)
    configure_tracing(_settings, service_name="textbook-ops-flows")
