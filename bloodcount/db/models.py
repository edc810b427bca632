"""Tables: labs, batches, slides, analyses (one per model run of a slide) and cells.

A slide's current result (counts, model) sits on the slide row, so polling and reports
read one row; every run's full result, cells included, sits in ``analyses`` and ``cells``,
so reprocessing with a new model keeps the old figures beside the model that made them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bloodcount.db.types import UTCDateTime, new_id, utcnow

# Deterministic constraint names, so migrations can drop what they created on any backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

BATCH_STATUSES = ("uploading", "queued", "processing", "done", "done_with_errors", "failed")
SLIDE_STATUSES = ("uploading", "queued", "processing", "done", "failed")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Lab(Base):
    """A customer lab; it authenticates with an API key of which only a hash is stored."""

    __tablename__ = "labs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    api_key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters of the key, so a lab can tell its keys apart without the secret.
    api_key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    batches: Mapped[list[Batch]] = relationship(back_populates="lab")


class Batch(Base):
    """One submission of slides by a lab."""

    __tablename__ = "batches"
    __table_args__ = (
        UniqueConstraint("lab_id", "idempotency_key", name="uq_batches_lab_idempotency"),
        Index("ix_batches_lab_created", "lab_id", "created_at"),
        Index("ix_batches_lab_reference", "lab_id", "reference"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id", ondelete="CASCADE"))
    reference: Mapped[str | None] = mapped_column(String(200))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # Hash of the request an idempotency key was first used with, to refuse a replay
    # of the same key with a different body.
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    # Status, progress and totals are not stored here: they are derived from the slides
    # on every read (one indexed aggregate), so they can never drift from them (rev. 0002).
    slide_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    lab: Mapped[Lab] = relationship(back_populates="batches")
    slides: Mapped[list[Slide]] = relationship(
        back_populates="batch", order_by="Slide.position", cascade="all, delete-orphan"
    )


class Slide(Base):
    """One image of a batch, its processing state and its current result."""

    __tablename__ = "slides"
    __table_args__ = (
        Index("ix_slides_batch_position", "batch_id", "position"),
        Index("ix_slides_batch_status", "batch_id", "status"),
        # The reconciler looks for slides stuck in a state for too long.
        Index("ix_slides_status_updated", "status", "updated_at"),
        Index("ix_slides_lab_finished", "lab_id", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"))
    # Copied from the batch so that every per-lab query needs no join to be scoped.
    lab_id: Mapped[int] = mapped_column(ForeignKey("labs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    filename: Mapped[str] = mapped_column(String(500))
    object_key: Mapped[str] = mapped_column(String(1024))
    content_type: Mapped[str | None] = mapped_column(String(100))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="queued")
    error: Mapped[str | None] = mapped_column(Text)
    # Deliveries that claimed the slide since it was last (re)queued by a person.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Times the reconciler re-sent the slide because it sat queued/processing too long.
    requeues: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Set by each claim; only the holder of the latest claim may write a result, so a
    # redelivered message never doubles a slide's cells.
    claim_token: Mapped[str | None] = mapped_column(String(36))
    rbc_count: Mapped[int | None] = mapped_column(Integer)
    wbc_count: Mapped[int | None] = mapped_column(Integer)
    platelet_count: Mapped[int | None] = mapped_column(Integer)
    # The same cells in the unbiased counting frame (NULL: analysed before it was recorded).
    rbc_frame_count: Mapped[int | None] = mapped_column(Integer)
    wbc_frame_count: Mapped[int | None] = mapped_column(Integer)
    platelet_frame_count: Mapped[int | None] = mapped_column(Integer)
    # [{"code", "message"}] of bloodcount.slide_warnings: [] when none, NULL when the slide
    # is not counted or was counted before they were recorded (revision 0004).
    # none_as_null: Python None is SQL NULL here, not the JSON value null.
    warnings: Mapped[list[dict[str, str]] | None] = mapped_column(JSON(none_as_null=True))
    model_name: Mapped[str | None] = mapped_column(String(100))
    model_version: Mapped[str | None] = mapped_column(String(50))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    overlay_key: Mapped[str | None] = mapped_column(String(1024))
    decode_ms: Mapped[float | None] = mapped_column(Float)
    detect_ms: Mapped[float | None] = mapped_column(Float)
    classify_ms: Mapped[float | None] = mapped_column(Float)
    total_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    batch: Mapped[Batch] = relationship(back_populates="slides")
    analyses: Mapped[list[Analysis]] = relationship(
        back_populates="slide", order_by="Analysis.created_at", cascade="all, delete-orphan"
    )


class Analysis(Base):
    """One model run over one slide; ``current`` marks the run the slide row reports."""

    __tablename__ = "analyses"
    __table_args__ = (Index("ix_analyses_slide_current", "slide_id", "current"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    slide_id: Mapped[str] = mapped_column(ForeignKey("slides.id", ondelete="CASCADE"))
    current: Mapped[bool] = mapped_column(Boolean, default=True)
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(50))
    model_sha256: Mapped[str] = mapped_column(String(64))
    rbc_count: Mapped[int] = mapped_column(Integer)
    wbc_count: Mapped[int] = mapped_column(Integer)
    platelet_count: Mapped[int] = mapped_column(Integer)
    total_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    slide: Mapped[Slide] = relationship(back_populates="analyses")
    cells: Mapped[list[Cell]] = relationship(
        back_populates="analysis", cascade="all, delete-orphan", passive_deletes=True
    )


class Cell(Base):
    """One detected cell: its class, how sure the model is, and where it is."""

    __tablename__ = "cells"
    __table_args__ = (Index("ix_cells_analysis", "analysis_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    analysis_id: Mapped[int] = mapped_column(ForeignKey("analyses.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(20))
    confidence: Mapped[float] = mapped_column(Float)
    p_rbc: Mapped[float] = mapped_column(Float)
    p_wbc: Mapped[float] = mapped_column(Float)
    p_platelets: Mapped[float] = mapped_column(Float)
    x0: Mapped[int] = mapped_column(Integer)
    y0: Mapped[int] = mapped_column(Integer)
    x1: Mapped[int] = mapped_column(Integer)
    y1: Mapped[int] = mapped_column(Integer)
    edge: Mapped[bool] = mapped_column(Boolean, default=False)
    review: Mapped[bool] = mapped_column(Boolean, default=False)
    # Inside the unbiased counting frame (NULL: analysed before it was recorded).
    frame: Mapped[bool | None] = mapped_column(Boolean)

    analysis: Mapped[Analysis] = relationship(back_populates="cells")
