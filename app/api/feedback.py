"""Thumbs up / down on an answer."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import select

from app.api.deps import SessionDep, require_scope
from app.errors import NotFound
from app.models import Feedback, QueryLog
from app.schemas import ErrorResponse, FeedbackPublic, FeedbackRequest

router = APIRouter(prefix="/v1/feedback", tags=["feedback"], dependencies=[require_scope("chat")])


@router.post("", status_code=201, response_model=FeedbackPublic, responses={404: {"model": ErrorResponse}})
def add_feedback(body: FeedbackRequest, db: SessionDep) -> FeedbackPublic:
    """Rate an answer by its request_id (1 or -1), with an optional comment."""
    if db.exec(select(QueryLog.id).where(QueryLog.request_id == body.request_id)).first() is None:
        raise NotFound(f"request {body.request_id}")
    feedback = Feedback(request_id=body.request_id, rating=body.rating, comment=body.comment)
    db.add(feedback)
    db.commit()
    db.refresh(feedback)
    assert feedback.id is not None
    return FeedbackPublic(id=feedback.id, request_id=feedback.request_id, rating=feedback.rating)
