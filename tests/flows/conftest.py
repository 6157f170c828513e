"""Fixtures of the deploy-backend tests (tests/support/deploy_targets.py), available to this folder's modules."""

from tests.support.deploy_targets import deploy_target, deploy_versions  # noqa: F401
