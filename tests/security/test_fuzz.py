"""Schemathesis against the running service's OpenAPI schema: no 5xx, every answer as documented.

The service is the real `python -m app serve` on a free loopback port (the session's database, a copy of the
ingested index, extractive answers). Bounded by max_examples to about a minute on 2 cores. The only documented 5xx
is 503 (Postgres, the index or the embedding backend down) and 504 (REQUEST_TIMEOUT_S): neither can happen here,
so any 5xx fails.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.rag.vector_index.sparse_copy import copy_index_tree
from tests.support.service_process import run_service

pytestmark = pytest.mark.slow
MAX_EXAMPLES = 80
CLEANED_EMPTY = "empty once control characters and spaces are removed"
UNKNOWN_CHAPTER = "unknown chapter"
OTHER_ORIGIN = "is not the site; send the page's path"
# Documented refusals of schema-valid input: JSON Schema cannot say "one printable character", which chapters the
# current index holds, nor which origins the site has (the schema gives the shapes; the messages say what is known).
DOCUMENTED_422 = (CLEANED_EMPTY, UNKNOWN_CHAPTER, OTHER_ORIGIN)


@pytest.fixture(scope="module")
def service(settings, ingested_textbook, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    copy_index_tree(settings.resolved_index_dir, root / "index")
    env = {"DATABASE_URL": settings.database_url, "INDEX_DIR": str(root / "index")}
    with run_service(env, root / "api.log") as running:
        yield running


def test_the_api_honours_its_openapi_schema(service):
    # schemathesis's pytest integration (from_fixture) reads a node attribute pytest 9 no longer has, so the
    # operations are driven here with hypothesis directly, the way its Python API documents (`as_strategy`).
    schema = schemathesis.openapi.from_url(f"{service.base}/openapi.json")
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= {"POST /v1/chat", "POST /v1/search",
                                                                    "GET /v1/sessions/{session_id}", "POST /v1/feedback"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                             database=None, derandomize=True)
        def check(case):
            response = case.call(timeout=30)
            if response.status_code == 422 and any(reason in response.text for reason in DOCUMENTED_422):
                # a documented refusal (above): every other check still runs
                case.validate_response(response, excluded_checks=[positive_data_acceptance])
            else:
                case.validate_response(response)

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:  # noqa: BLE001 - collect every operation's failure
            failures[f"{operation.method.upper()} {operation.path}"] = str(exc)[:3000]
    assert not failures, "\n\n".join(f"{name}:\n{text}" for name, text in failures.items())
    assert "Traceback" not in service.log_tail(200000)
