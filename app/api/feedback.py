"""Thumbs up / down on an answer."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import select

from app.api.deps import SessionDep
from app.api.schemas import FeedbackPublic, FeedbackRequest
from app.core.models import Feedback, QueryLog, utcnow
from app.http.errors import NotFound

router = APIRouter(prefix="/feedback", tags=["feedback"])


@router.post("", status_code=201, response_model=FeedbackPublic)
def add_feedback(body: FeedbackRequest, db: SessionDep) -> FeedbackPublic:
    """Rate an answer by its request_id (1 or -1), with an optional comment. One rating per answer: a later one
    replaces the earlier (the reader changed their mind)."""
    if db.exec(select(QueryLog.id).where(QueryLog.request_id == body.request_id)).first() is None:
        raise NotFound(f"request {body.request_id}")
    values = {"request_id": body.request_id, "rating": body.rating, "comment": body.comment, "created_at": utcnow()}
    upsert = insert(Feedback).values(**values)
    upsert = upsert.on_conflict_do_update(index_elements=[Feedback.request_id], set_={
        "rating": upsert.excluded.rating, "comment": upsert.excluded.comment, "created_at": upsert.excluded.created_at,
    }).returning(Feedback.id)
    feedback_id = db.exec(upsert).scalar_one()  # type: ignore[call-overload]
    db.commit()
    return FeedbackPublic(id=feedback_id, request_id=body.request_id, rating=body.rating)
