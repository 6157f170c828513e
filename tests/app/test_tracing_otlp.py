"""Spans over OTLP/HTTP from the real service process to a real receiver on loopback (oteltap: a native OTLP/HTTP
protobuf receiver shipped in its PyPI wheel), configured only with the standard variables."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.conftest import free_port
from tests.support.service_process import failing_service


def test_the_service_exports_its_request_spans_to_an_otlp_receiver(settings, tmp_path):
    from oteltap import OtelTapHttpProtobufReceiver, OtelTapHttpProtobufReceiverSettings

    port = free_port()
    log_file = tmp_path / "service.log"

    async def scenario():
        async with OtelTapHttpProtobufReceiver(OtelTapHttpProtobufReceiverSettings(http_port=port)) as receiver:
            chat_span = asyncio.ensure_future(receiver.await_trace(lambda s: s.name == "POST /v1/chat", timeout=90))
            env = {"TRACING_ENABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                   "OTEL_BSP_SCHEDULE_DELAY": "200", "LOG_JSON": "true", "LOG_LEVEL": "INFO"}

            def call_the_service() -> httpx.Response:
                with failing_service(settings.resolved_database_url, tmp_path / "data", output=log_file, **env) as svc:
                    response = httpx.post(f"{svc.base}/v1/chat", json={"question": "What is ZMP?"}, timeout=30)
                    return response

            response = await asyncio.to_thread(call_the_service)
            return response, await chat_span

    response, span = asyncio.run(scenario())
    assert response.status_code == 503  # the service's index is unreachable on purpose: an error trace
    trace_id = span.trace_id.hex()
    assert response.headers["x-trace-id"] == trace_id
    attributes = {a.key: a.value for a in span.attributes}
    assert attributes["http.route"].string_value == "/v1/chat"
    assert attributes["http.response.status_code"].int_value == 503
    lines = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    warned = [line for line in lines if line.get("request_id") == response.headers["x-request-id"]]
    assert warned and all(line["trace_id"] == trace_id for line in warned)


pytestmark = pytest.mark.slow
