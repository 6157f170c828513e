"""create_app(): routers, middleware, lifespan — nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware

from app.api import chat, feedback, health, search, sessions
from app.db import create_db_engine
from app.errors import install_error_handlers
from app.http_hygiene import install_hygiene
from app.logging_setup import configure_logging
from app.metrics import instrument_pool, release_pool
from app.middleware import BodySizeLimitMiddleware, HttpMetricsMiddleware, RequestIdMiddleware
from app.rag.answering import create_answerer
from app.rag.embeddings import create_embedder
from app.rag.retrieval import Retriever
from app.rag.vector_store import open_vector_index
from app.secret_source import service_database_credentials
from app.services.chat import ChatService, QueryDeps
from app.settings import Settings, get_settings
from app.tracing import TraceIdMiddleware, configure_tracing

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_db_engine(settings, service_database_credentials(settings))
        instrument_pool(engine)
        embedder = create_embedder(settings)
        if hasattr(embedder, "load"):
            await run_in_threadpool(embedder.load)  # load the model before the first reader waits for it
        vector_index = open_vector_index(settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.vector_index = vector_index
        app.state.chat_service = ChatService(QueryDeps(
            settings=settings, engine=engine,
            retriever=Retriever(embedder=embedder, index=vector_index, settings=settings),
            answerer=create_answerer(settings), embedding_model=settings.resolved_embedding_model,
        ))
        log.info("query service ready: collection %s, %s answers", settings.collection_name(), settings.answer_backend)
        try:
            yield
        finally:
            vector_index.close()
            release_pool(engine)
            engine.dispose()

    app = FastAPI(
        title="textbook-ops query service",
        version="0.1.0",
        description="Chat with the textbook *Physical AI & Humanoid Robotics*: answers with cited sources.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in (health.router, chat.router, search.router, sessions.router, feedback.router):
        app.include_router(router)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_hygiene(app, settings)  # 429s; timeout, security headers, trusted proxies (app/http_hygiene.py)
    app.add_middleware(HttpMetricsMiddleware)
    app.add_middleware(RequestIdMiddleware)
    if configure_tracing(settings, service_name="textbook-ops-api"):
        app.add_middleware(TraceIdMiddleware)  # inside FastAPI's request span, outside the request id
    # Outermost, so error responses (413, 503) carry the CORS headers the site needs to read them.
    app.add_middleware(
        CORSMiddleware, allow_origins=settings.cors_allowed_origins, allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["content-type", "x-api-key", "x-request-id"],
        expose_headers=["x-request-id", "retry-after"], max_age=600,
    )
    return app
