"""Logs: JSON lines in production, the request id in service logs, the flow run id in flow logs, and no secret
on any path (request headers and query strings, exception messages, URLs with passwords, flow logs)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import uuid

import httpx
import pytest

from app.observability.logging_setup import JsonFormatter, TextFormatter, install_secret_scrubbing, request_id_var, scrub
from tests.support.service_process import failing_service

API_KEY = "tbo_Zx81secretKEYvalue_4u"
OPENAI_KEY = "sk-proj-livesecretVALUE9988"
BEARER = "eyJhbGciOiJIUzI1NiJ9.secretpayload.sig"
DB_PASSWORD = "pg-Secret-Passw0rd"
QUERY_SECRET = "querysecret123"
SECRETS = [API_KEY.removeprefix("tbo_"), OPENAI_KEY.removeprefix("sk-"), BEARER, DB_PASSWORD, QUERY_SECRET]


def assert_no_secret(output: str) -> None:
    leaked = [secret for secret in SECRETS if secret in output]
    assert not leaked, f"secrets in the logs: {leaked}"


@pytest.mark.parametrize("text", [
    f"postgresql+psycopg://textbook_app:{DB_PASSWORD}@db.example:5432/textbook",
    f"Authorization: Bearer {BEARER}",
    f"headers={{'x-api-key': '{API_KEY}'}}",
    f"(b'x-api-key', b'{API_KEY}')",
    f"X-API-Key: {API_KEY}",
    f"new key {OPENAI_KEY} staged",
    f"GET /v1/search?api_key={QUERY_SECRET}&password={QUERY_SECRET} HTTP/1.1",
])
def test_scrub_removes_each_kind_of_secret(text: str):
    assert_no_secret(scrub(text))
    assert "***" in scrub(text)


def test_every_formatter_and_exception_path_is_scrubbed():
    install_secret_scrubbing()
    stream = io.StringIO()
    handlers = []
    for formatter in (JsonFormatter(), TextFormatter()):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handlers.append(handler)
    log = logging.getLogger("tests.secrets")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    for handler in handlers:
        log.addHandler(handler)
    token = request_id_var.set("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    try:
        log.info("connecting to %s", f"postgresql://app:{DB_PASSWORD}@127.0.0.1/textbook")
        log.info("Authorization: Bearer %s", BEARER)  # split between the message and its argument
        log.warning("headers %s", {"x-api-key": API_KEY, "authorization": f"Bearer {BEARER}"})
        try:
            raise RuntimeError(f"could not reach https://user:{DB_PASSWORD}@host/ with {OPENAI_KEY}")
        except RuntimeError:
            log.exception("call failed")
        log.error(ValueError(f"key {API_KEY} rejected"))
    finally:
        request_id_var.reset(token)
        for handler in handlers:
            log.removeHandler(handler)
    output = stream.getvalue()
    assert_no_secret(output)
    json_lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert json_lines and all(entry["request_id"] == "1b4e28ba-2fa1-11d2-883f-0016d3cca427" for entry in json_lines)
    assert any("RuntimeError" in entry.get("exc", "") for entry in json_lines)
    assert "request=1b4e28ba-2fa1-11d2-883f-0016d3cca427" in output


def test_the_service_logs_json_lines_with_request_ids_and_no_secrets(settings, tmp_path):
    """The real service (uvicorn, LOG_JSON, DEBUG): secrets in headers, query strings, its OpenAI key and its
    database URL never reach its output; every line is JSON and the request's lines carry its id."""
    database_url = settings.database_url.replace("test-app-password", DB_PASSWORD)  # a wrong password: 503s
    log_file = tmp_path / "service.log"
    request_id = str(uuid.uuid4())
    with failing_service(database_url, tmp_path / "data", output=log_file, openai_key=OPENAI_KEY,
                         LOG_JSON="true", LOG_LEVEL="DEBUG") as service:
        headers = {"x-api-key": API_KEY, "authorization": f"Bearer {BEARER}", "x-request-id": request_id}
        with httpx.Client(base_url=service.base, timeout=30, headers=headers) as client:
            client.post(f"/v1/chat?api_key={QUERY_SECRET}", json={"question": f"my password={QUERY_SECRET}"})
            client.post("/v1/search", json={"query": "ZMP", "k": 3})
            client.get(f"/v1/sessions/{uuid.uuid4()}?password={QUERY_SECRET}")
            client.get("/ready")
    output = log_file.read_text()
    assert_no_secret(output)
    entries = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert entries, "the service logged nothing"
    mine = [e for e in entries if e.get("correlation_id") == request_id]  # the client's X-Request-ID
    assert any("/v1/chat" in e["message"] for e in mine), "the access log line lacks the client's request id"
    assert all(e.get("request_id") and e["request_id"] != request_id for e in mine), "each request has its own id"
    assert {e["logger"] for e in entries} & {"uvicorn.access", "uvicorn.error"}


def test_flow_logs_carry_the_flow_run_id_and_no_secrets(settings, prefect_harness):
    """A flow that logs secrets (in messages, arguments and its failure) through Prefect's run logger: the
    console and the logs stored on the flow run (Prefect's API handler) show none, and the console lines
    carry the flow run id."""
    from prefect import flow, get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    import flows  # noqa: F401 - the flows' logging setup, as every flow module gets it

    @flow(name="leaky-flow")
    def leaky_flow(database_url: str) -> None:
        logger = get_run_logger()
        logger.warning("restoring into %s", database_url)  # warnings: the tests log at WARNING
        logger.warning("new key %s staged; Authorization: Bearer %s", OPENAI_KEY, BEARER)
        logger.warning("headers: %s", {"X-API-Key": API_KEY})
        raise RuntimeError(f"could not connect to {database_url}")

    # The console is checked through the console handlers' own formatting of the run's records: what reaches the
    # terminal depends on which stderr pytest had swapped in when logging was first set up in this process.
    records: list[logging.LogRecord] = []
    keep = logging.Handler()
    keep.emit = records.append  # type: ignore[method-assign]
    root = logging.getLogger()
    root.addHandler(keep)
    try:
        state = leaky_flow(f"postgresql://textbook_ops:{DB_PASSWORD}@127.0.0.1:1/postgres", return_state=True)
    finally:
        root.removeHandler(keep)
    assert state.is_failed()
    consoles = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
    assert consoles, "flow processes log to the console"
    console_text = "\n".join(handler.format(record) for handler in consoles for record in records)
    flow_run_id = str(state.state_details.flow_run_id)

    async def run_logs() -> list[str]:
        await APILogHandler.aflush()  # the handler ships records in batches
        async with get_client() as client:
            logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        return [log.message for log in logs]

    stored = asyncio.run(run_logs())
    assert any("restoring into postgresql://textbook_ops:***@" in message for message in stored), stored
    assert any("could not connect" in message for message in stored)
    assert_no_secret("\n".join(stored))
    assert_no_secret(console_text)
    assert f"flow_run={flow_run_id}" in console_text
