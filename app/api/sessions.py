"""A conversation and its messages."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from sqlmodel import select

from app.api.deps import SessionDep
from app.api.schemas import MessagePublic, SessionPublic
from app.core.models import ChatSession, Message
from app.http.errors import NotFound
from app.services.privacy import erase_session

router = APIRouter(prefix="/sessions", tags=["sessions"])


@router.get("/{session_id}", response_model=SessionPublic)
def get_session(session_id: uuid.UUID, db: SessionDep) -> SessionPublic:
    chat_session = db.get(ChatSession, session_id)
    if chat_session is None:
        raise NotFound(f"session {session_id}")
    messages = db.exec(select(Message).where(Message.session_id == session_id).order_by(Message.id)).all()  # type: ignore[arg-type]
    return SessionPublic(
        id=chat_session.id, title=chat_session.title, locale=chat_session.locale, created_at=chat_session.created_at,
        last_active_at=chat_session.last_active_at,
        messages=[
            MessagePublic(role=m.role, content=m.content, sources=m.sources, request_id=m.request_id,
                          created_at=m.created_at)
            for m in messages
        ],
    )


@router.delete("/{session_id}", status_code=204, response_class=Response)
def delete_session(session_id: uuid.UUID, db: SessionDep) -> Response:
    """Erase the conversation: its messages are deleted, its questions and feedback comments cleared. The numbers
    of its queries (tokens, cost, latency) stay for the reports. Backups keep it until they expire (README, Privacy)."""
    erase_session(db=db, session_id=session_id)
    return Response(status_code=204)
