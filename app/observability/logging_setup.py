"""Logging: readable text in development, JSON lines in production (LOG_JSON=true), never a secret.

- The service's records carry the request id (`X-Request-ID`, set by RequestIdMiddleware in a contextvar) and
  the client's own X-Request-ID, when it sent one, as `correlation_id`;
  the flows' records carry the flow run id (Prefect's run logger puts it on each record).
- Secrets are scrubbed where records are made (a log record factory), so every handler sees the scrubbed
  text, Prefect's API handler and uvicorn's included: API keys (`tbo_...`, `tbk_...`, `sk-...`), passwords
  in URLs, bearer tokens, `X-API-Key` values, `password=`/`token=` pairs; exception tracebacks too. Our
  formatters scrub their output once more.
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from app.settings import Settings

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)  # the client's X-Request-ID
trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)  # set by app.observability.tracing when tracing is on

REDACTED = "***"
_SECRET_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # scheme://user:password@host -> scheme://user:***@host
    (re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)([^\s@/]+)(@)"), rf"\1{REDACTED}\3"),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/\-]+=*"), rf"\1{REDACTED}"),
    (re.compile(r"""(?i)(x-api-key['"]?\s*[:=,]\s*\(?\s*b?['"]?)([^\s'",)}]+)"""), rf"\1{REDACTED}"),
    # also percent-encoded, as in a logged query string: tbo%5F..., sk%2D...
    (re.compile(r"\b(tb[ko](?:_|%5[Ff]))(?:[A-Za-z0-9_\-]|%[0-9A-Fa-f]{2}){6,}"), rf"\1{REDACTED}"),
    (re.compile(r"\b(sk(?:-|%2[Dd]))(?:[A-Za-z0-9_\-]|%[0-9A-Fa-f]{2}){6,}"), rf"\1{REDACTED}"),
    (re.compile(r"""(?i)\b((?:password|passwd|pwd|secret|token|api_key|apikey|access_key)['"]?\s*[=:]\s*['"]?)"""
                r"""([^\s&;'",}]+)"""), rf"\1{REDACTED}"),
]
_CONTEXT_FIELDS = ("request_id", "correlation_id", "trace_id", "flow_run_id", "flow_run_name", "task_run_id",
                   "task_run_name")


def scrub(text: str) -> str:
    """The text with every secret pattern replaced by ***."""
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _scrub_arg(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, BaseException) or isinstance(value, bytes):
        return scrub(str(value))
    return value


def _scrubbing_factory(previous: Any) -> Any:
    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.msg, str):
            record.msg = scrub(record.msg)
        elif isinstance(record.msg, BaseException):
            record.msg = scrub(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(_scrub_arg(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _scrub_arg(v) for k, v in record.args.items()}
        if record.args:  # a secret split between the message and its arguments ("Bearer %s", token)
            try:
                merged = record.getMessage()
            except (TypeError, ValueError):
                merged = None
            if merged is not None and (cleaned := scrub(merged)) != merged:
                record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub("".join(traceback.format_exception(*record.exc_info)).rstrip())
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = correlation_id_var.get()
        if getattr(record, "trace_id", None) is None:
            record.trace_id = trace_id_var.get()
        return record

    make_record._textbook_ops_scrubbing = True  # type: ignore[attr-defined]
    return make_record


def install_secret_scrubbing() -> None:
    """Scrub secrets from every log record made in this process from now on (idempotent)."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "_textbook_ops_scrubbing", False):
        logging.setLogRecordFactory(_scrubbing_factory(factory))


def _context(record: logging.LogRecord) -> dict[str, str]:
    return {name: str(value) for name in _CONTEXT_FIELDS if (value := getattr(record, name, None)) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the request or flow run ids, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context(record),
        }
        if record.exc_info or record.exc_text:
            entry["exc"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return scrub(json.dumps(entry, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """`time level logger [request=... | flow_run=...] message`: for people reading a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        context = _context(record)
        parts = []
        if "request_id" in context:
            parts.append(f"request={context['request_id']}")
        if "flow_run_id" in context:
            parts.append(f"flow_run={context['flow_run_id']}")
        if "task_run_name" in context:
            parts.append(f"task={context['task_run_name']}")
        record.context = f" [{' '.join(parts)}]" if parts else ""
        return scrub(super().format(record))


def formatter_for(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if settings.log_json else TextFormatter()


def configure_logging(settings: Settings) -> None:
    """The service: one root handler in our format; uvicorn's loggers (access log too) propagate to it."""
    install_secret_scrubbing()
    root = logging.getLogger()
    if getattr(root, "_textbook_ops_configured", False):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(formatter_for(settings))
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    logging.captureWarnings(True)  # warnings too become records (JSON lines in production)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    root._textbook_ops_configured = True  # type: ignore[attr-defined]


def configure_flow_logging(settings: Settings) -> None:
    """A flow process: keep Prefect's handlers (its API handler ships logs to the run), scrub secrets, and
    print console lines in our format (JSON with LOG_JSON) so each carries its flow run id."""
    install_secret_scrubbing()
    formatter = formatter_for(settings)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setFormatter(formatter)
