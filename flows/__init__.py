"""Prefect flows: one file per operation, each reading like the runbook it automates.

Importing the package sets up the flows' logging (app/logging_setup.py): secrets scrubbed from every record,
Prefect's API handler included, and console lines that carry the flow run id (JSON with LOG_JSON=true).
Prefect's own configuration is applied first; later calls to it are incremental and keep ours.
"""

from prefect.logging.configuration import ensure_logging_setup

from app.logging_setup import configure_flow_logging
from app.settings import SettingsError, load_settings

ensure_logging_setup()
try:
    configure_flow_logging(load_settings())
except SettingsError:
    pass  # no run can start with such settings: the CLI says so in one line (flows/cli.py), a run fails naming it
