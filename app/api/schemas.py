"""What crosses the HTTP boundary. Table models are never returned directly."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.http.text_hygiene import CleanComment, CleanText
from app.rag.chunking import chapter_of
from app.rag.language import locale_of

Locale = Literal["en", "ur"]
SITE_PAGE_RE = re.compile(r"^/(?:ur/)?docs(?:/[^\s#?]*)?$")
ABSOLUTE_URL_RE = re.compile(r"^https?://[^/\s]+")
DOC_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]{0,199}$")
CHAPTER_DESCRIPTION = "only this chapter: a doc id (ros2-fundamentals) or its path (/docs/ros2-fundamentals)"
# The documented shapes of `selection.page_url` and `chapter` (the validators also accept surrounding spaces; an
# absolute page_url must be on one of the site's origins, CORS_ALLOWED_ORIGINS).
PAGE_URL_PATTERN = r"^(?:https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?)?/(?:ur/)?docs(?:/[A-Za-z0-9_.~%/-]*)?(?:#[A-Za-z0-9_.~%-]*)?$"
CHAPTER_PATTERN = r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]{0,199}|/(?:ur/)?docs/[A-Za-z0-9][A-Za-z0-9_.-]{0,199}/?)$"


def normalise_chapter(value: str | None) -> str | None:
    """`ros2-fundamentals`, `/docs/ros2-fundamentals` and `/ur/docs/ros2-fundamentals/` are one chapter."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith("/"):
        if not SITE_PAGE_RE.match(value.split("#", 1)[0].rstrip("/") or "/"):
            raise ValueError("a chapter path must look like /docs/<chapter> or /ur/docs/<chapter>")
        value = chapter_of(value)
    if not DOC_ID_RE.match(value):
        raise ValueError("must be a chapter's doc id (like ros2-fundamentals) or its path (like /docs/ros2-fundamentals)")
    return value


class SelectionIn(BaseModel):
    """Text the reader selected on a page of the site ("Ask about this")."""

    model_config = ConfigDict(extra="forbid")

    text: CleanText = Field(min_length=1, max_length=4000, description="the selected text (at most 4000 characters)")
    page_url: str = Field(
        min_length=1, max_length=2000,
        description="the page it was selected on: a site path (/docs/..., /ur/docs/...) or an absolute URL of the site",
        json_schema_extra={"pattern": PAGE_URL_PATTERN},
    )

    @field_validator("page_url")
    @classmethod
    def _site_page(cls, value: str) -> str:
        value = value.strip()
        origin = ABSOLUTE_URL_RE.match(value)
        path = value[origin.end():] if origin else value
        path = path.split("#", 1)[0].split("?", 1)[0].rstrip("/") or "/"
        if not (origin or value.startswith("/")) or not SITE_PAGE_RE.match(path):
            raise ValueError("must be a page of the site: a path like /docs/<page> or /ur/docs/<page>, "
                             "or an absolute URL of the site with such a path")
        return value

    @property
    def origin(self) -> str | None:
        """scheme://host[:port] of an absolute page_url (checked against the site's origins), else None."""
        match = ABSOLUTE_URL_RE.match(self.page_url)
        return match.group().lower() if match else None

    @property
    def page_path(self) -> str:
        """The page's path as the index stores it (`page_url` payload): no origin, anchor, query or trailing /."""
        origin = ABSOLUTE_URL_RE.match(self.page_url)
        path = self.page_url[origin.end():] if origin else self.page_url
        return path.split("#", 1)[0].split("?", 1)[0].rstrip("/") or "/"


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: CleanText = Field(min_length=1, max_length=2000, description="the reader's question")
    session_id: uuid.UUID | None = Field(default=None, description="continue a conversation")
    locale: Locale = Field(default=None, description=(  # type: ignore[assignment] - filled in by _locale
        "the language to search and answer in; without it, the question's script decides (Arabic script: ur, "
        "else en). The widget sends the page's locale, which wins."))
    k: int = Field(default=5, ge=1, le=20, description="how many sources to retrieve")
    selection: SelectionIn | None = Field(default=None, description="ask about text selected on a page")
    chapter: str | None = Field(default=None, max_length=200, description=CHAPTER_DESCRIPTION,
                                json_schema_extra={"pattern": CHAPTER_PATTERN})

    _chapter = field_validator("chapter")(classmethod(lambda cls, value: normalise_chapter(value)))

    @model_validator(mode="before")
    @classmethod
    def _locale(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("locale") is None and isinstance(data.get("question"), str):
            return {**data, "locale": locale_of(data["question"])}
        return data


class SearchRequestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: CleanText = Field(min_length=1, max_length=2000)
    k: int = Field(default=5, ge=1, le=50)
    locale: Locale | None = None
    chapter: str | None = Field(default=None, max_length=200, description=CHAPTER_DESCRIPTION,
                                json_schema_extra={"pattern": CHAPTER_PATTERN})

    _chapter = field_validator("chapter")(classmethod(lambda cls, value: normalise_chapter(value)))


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
    citations_verified: bool = Field(
        default=False,
        description="every [n] in the answer points to sources[n-1], and each cited sentence was checked against it",
    )
    citation_repairs: dict[str, int] = Field(
        default_factory=dict,
        description="what verification changed: phantom, miscited, uncited, unsupported, renumbered, unused, "
                    "no_supported_claim (counts); empty when the answer needed no repair",
    )


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
    title: str | None = Field(default=None, description="from the session's first question, in its language")
    locale: str
    created_at: datetime
    last_active_at: datetime
    messages: list[MessagePublic]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: uuid.UUID
    rating: Literal[1, -1]
    comment: CleanComment = Field(default=None, max_length=2000)


class FeedbackPublic(BaseModel):
    id: int
    request_id: uuid.UUID
    rating: int


class ErrorResponse(BaseModel):
    detail: str
    error_code: str
    request_id: str | None = None
