"""create_app(): routers, middleware, lifespan — nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from app.api import health
from app.api.main import api_router
from app.core.db import create_db_engine
from app.core.secret_source import service_database_credentials
from app.http.errors import install_error_handlers
from app.http.middleware import install_middleware
from app.observability.logging_setup import configure_logging
from app.observability.metrics import instrument_pool, release_pool
from app.observability.tracing import configure_tracing
from app.rag.answering import create_answerer
from app.rag.batcher import BatchingEmbedder
from app.rag.embeddings import Embedder, create_embedder
from app.rag.retrieval import Retriever
from app.rag.vector_index import open_vector_index
from app.services.chat import ChatService, QueryPipeline
from app.settings import Settings, get_settings

log = logging.getLogger(__name__)


def query_embedder(settings: Settings) -> Embedder:
    """The local model behind a micro-batcher (concurrent queries share encode calls); OpenAI as it is."""
    embedder = create_embedder(settings)
    if settings.embedding_backend != "local":
        return embedder
    return BatchingEmbedder(embedder, max_batch=settings.embedding_batch_max,
                            max_wait_s=settings.embedding_batch_wait_ms / 1000, max_queue=settings.embedding_queue_max)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_db_engine(settings, service_database_credentials(settings))
        instrument_pool(engine)
        embedder = query_embedder(settings)
        if hasattr(embedder, "load"):
            # Load the model before the first reader waits for it; a missing ONNX export stops the start here.
            await run_in_threadpool(embedder.load)
        vector_index = open_vector_index(settings)
        app.state.settings = settings
        app.state.engine = engine
        app.state.vector_index = vector_index
        app.state.chat_service = ChatService(QueryPipeline(
            settings=settings, engine=engine,
            retriever=Retriever(embedder=embedder, index=vector_index, settings=settings),
            answerer=create_answerer(settings), embedding_model=settings.resolved_embedding_model,
        ))
        log.info("query service ready: collection %s, %s answers", settings.collection_name(), settings.answer_backend)
        try:
            yield
        finally:
            if isinstance(embedder, BatchingEmbedder):
                embedder.close()
            vector_index.close()
            if (limiter := getattr(app.state, "rate_limiter", None)) is not None:
                await run_in_threadpool(limiter.release)
            release_pool(engine)
            engine.dispose()

    app = FastAPI(
        title="textbook-ops query service",
        version="0.1.0",
        description="Chat with the textbook *Physical AI & Humanoid Robotics*: answers with cited sources.",
        lifespan=lifespan,
        redirect_slashes=False,  # `/v1/chat/` is a 404, not a redirect whose Location comes from the Host header
    )
    install_error_handlers(app, settings)
    app.include_router(health.router)
    app.include_router(api_router)
    tracing = configure_tracing(settings, service_name="textbook-ops-api")
    app.state.in_flight = install_middleware(app, settings, tracing=tracing)
    return app
