"""Erasing a reader's conversation: what DELETE /v1/sessions/{id} does, in one transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, or_, select, update
from sqlmodel import Session

from app.core.models import ChatSession, Feedback, Message, QueryLog
from app.http.errors import NotFound


@dataclass(frozen=True)
class Erasure:
    messages_deleted: int
    questions_cleared: int
    comments_cleared: int


def erase_session(*, db: Session, session_id: uuid.UUID) -> Erasure:
    """Delete the conversation and its messages, clear the question text of its query_log rows and the comments of
    its feedback. The query_log rows stay (tokens, costs, latency, status): reports over them do not change."""
    if db.get(ChatSession, session_id, with_for_update=True) is None:
        raise NotFound(f"session {session_id}")
    request_ids = (
        select(Message.request_id).where(Message.session_id == session_id, Message.request_id.is_not(None))  # type: ignore[union-attr]
        .union(select(QueryLog.request_id).where(QueryLog.session_id == session_id))
    )
    questions = db.execute(
        update(QueryLog).where(or_(QueryLog.session_id == session_id, QueryLog.request_id.in_(request_ids)),  # type: ignore[attr-defined]
                               QueryLog.question.is_not(None))  # type: ignore[union-attr]
        .values(question=None)
    ).rowcount
    comments = db.execute(
        update(Feedback).where(Feedback.request_id.in_(request_ids), Feedback.comment.is_not(None))  # type: ignore[attr-defined, union-attr]
        .values(comment=None)
    ).rowcount
    messages = db.execute(delete(Message).where(Message.session_id == session_id)).rowcount  # type: ignore[arg-type]
    db.execute(delete(ChatSession).where(ChatSession.id == session_id))  # type: ignore[arg-type]
    db.commit()
    return Erasure(messages_deleted=messages, questions_cleared=questions, comments_cleared=comments)
