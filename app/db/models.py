"""Typed ORM models. Only Alembic migrations change the schema."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, Double, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db.base import Base


def utcnow() -> datetime:
    return datetime.now(UTC)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))  # display name, as first uploaded
    normalized_name: Mapped[str] = mapped_column(String(200), unique=True)  # PEP 503, computed in Python
    created: Mapped[datetime] = mapped_column(default=utcnow)
    # Bumped on every change to the project's files; caches and ETags key on it, so every worker and
    # replica agrees without talking to each other.
    serial: Mapped[int] = mapped_column(BigInteger, default=0)
    # PEP 792 status marker (dists.PROJECT_STATUSES); None is ``active``, the default.
    status: Mapped[str | None] = mapped_column(String(20))
    status_reason: Mapped[str | None] = mapped_column(Text)

    files: Mapped[list[File]] = relationship(back_populates="project", lazy="raise")


class File(Base):
    __tablename__ = "files"
    __table_args__ = (Index("ix_files_project_id_version", "project_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(100))  # canonical PEP 440 string (str(Version))
    filename: Mapped[str] = mapped_column(String(255), unique=True)
    filetype: Mapped[str] = mapped_column(String(20))  # bdist_wheel | sdist
    pyversion: Mapped[str | None] = mapped_column(String(50))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    # Only when computed to verify the upload form (app/services/form.py); SHA-256 is the digest.
    md5: Mapped[str | None] = mapped_column(String(32))
    blake2_256: Mapped[str | None] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(512))
    metadata_version: Mapped[str | None] = mapped_column(String(10))
    summary: Mapped[str | None] = mapped_column(Text)
    requires_python: Mapped[str | None] = mapped_column(String(255))
    requires_dist: Mapped[str | None] = mapped_column(Text)  # JSON list
    description: Mapped[str | None] = mapped_column(Text)
    description_content_type: Mapped[str | None] = mapped_column(String(255))
    # PEP 658: sha256 of the stored core metadata file (storage_key + ".metadata"), None if absent.
    metadata_sha256: Mapped[str | None] = mapped_column(String(64))
    upload_time: Mapped[datetime] = mapped_column(default=utcnow)
    uploader: Mapped[str | None] = mapped_column(String(200))
    # PEP 592
    yanked: Mapped[bool] = mapped_column(default=False)
    yanked_reason: Mapped[str | None] = mapped_column(Text)

    project: Mapped[Project] = relationship(back_populates="files", lazy="raise")


class Event(Base):
    """Audit journal: who did what, when (uploads, yanks, deletions)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    time: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    action: Mapped[str] = mapped_column(String(40))
    project: Mapped[str] = mapped_column(String(200), index=True)  # normalised name
    version: Mapped[str | None] = mapped_column(String(100))
    filename: Mapped[str | None] = mapped_column(String(255), index=True)
    sha256: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text)


class LoginFailure(Base):
    """A wrong password, kept for the failed-login limit's window (app/auth/throttle.py) so that every
    worker and replica counts the same failures. Rows older than the window are deleted as new ones
    come; none is ever needed again (``packhouse transfer`` does not copy them)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_pair", "client", "username", "failed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    client: Mapped[str] = mapped_column(String(256))  # the address; an IPv6 client's /64
    username: Mapped[str] = mapped_column(String(256))  # the name given, cut to 256 characters
    failed_at: Mapped[float] = mapped_column(Double, index=True)  # seconds since the epoch (UTC)
