"""What crosses the HTTP boundary. Table models are never returned directly."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Locale = Literal["en", "ur"]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=2000, description="the reader's question")
    session_id: uuid.UUID | None = Field(default=None, description="continue a conversation")
    locale: Locale = "en"
    k: int = Field(default=5, ge=1, le=20, description="how many sources to retrieve")


class SearchRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=2000)
    k: int = Field(default=5, ge=1, le=50)
    locale: Locale | None = None


class Source(BaseModel):
    title: str
    url: str
    heading: str
    snippet: str
    score: float


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    embedding_tokens: int
    cost_usd: float


class Latency(BaseModel):
    retrieval: float
    generation: float
    total: float


class ChatResponse(BaseModel):
    answer: str
    sources: list[Source]
    session_id: uuid.UUID
    request_id: uuid.UUID
    usage: Usage
    latency_ms: Latency
    covered: bool
    answer_backend: str = Field(description="extractive | openai | extractive-fallback")


class SearchResult(BaseModel):
    id: str
    title: str
    url: str
    heading: str
    locale: str
    snippet: str
    text: str
    score: float


class SearchResponse(BaseModel):
    results: list[SearchResult]
    request_id: uuid.UUID
    latency_ms: Latency


class MessagePublic(BaseModel):
    role: str
    content: str
    sources: list[dict]
    request_id: uuid.UUID | None
    created_at: datetime


class SessionPublic(BaseModel):
    id: uuid.UUID
    locale: str
    created_at: datetime
    last_active_at: datetime
    messages: list[MessagePublic]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: uuid.UUID
    rating: Literal[1, -1]
    comment: str | None = Field(default=None, max_length=2000)


class FeedbackPublic(BaseModel):
    id: int
    request_id: uuid.UUID
    rating: int


class ErrorResponse(BaseModel):
    detail: str
    error_code: str
    request_id: str | None = None
