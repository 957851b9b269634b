"""The catalog's tables: sources, their paths, archive versions, codec models and jobs.

```
 sources ─┬─< source_paths            one content (sha256) seen under any number of paths
          ├─< archive_versions >── models     exactly one current version (superseded_by IS NULL)
          └─< jobs >────────────── models     compress: unique per (source, target ratio, model)
```
The database enforces the rules that must survive every process crash: uniqueness of
content and paths, one current archive version per source, one default model, a model in
use can't be deleted (ON DELETE RESTRICT) and a compress job can't exist twice.
Enums are stored as strings with CHECK constraints (not native PostgreSQL enums) so that
adding a state is an ordinary migration on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    func,
    select,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SHA256_HEX_LENGTH = 64
# A fixed-point ratio: equality in the compress uniqueness rule must not hinge on float noise.
RATIO = Numeric(12, 4, asdecimal=False)


def utcnow() -> datetime:
    """This host's clock, timezone-aware UTC: for records; leases use database_now()."""
    return datetime.now(UTC)


def database_now(session: Session) -> datetime:
    """The database server's clock, timezone-aware UTC: the one clock every host's leases share.

    Hosts' clocks drift apart; a lease granted by one host's clock and judged expired by
    another's could be taken from a live worker. PostgreSQL's `now()` is the start of the
    transaction; SQLite's `'now'` is read on the (only) host that opens the file.
    """
    if session.get_bind().dialect.name == "sqlite":
        raw = session.scalar(select(func.strftime("%Y-%m-%d %H:%M:%f", "now")))
        return datetime.fromisoformat(raw).replace(tzinfo=UTC)
    value = session.scalar(select(func.now()))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the backend.

    SQLite has no timezone type and hands back naive values; PostgreSQL returns its session
    time zone. Normalising here keeps lease arithmetic free of naive/aware mix-ups.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("catalog timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class SourceState(enum.StrEnum):
    """Where a piece of content stands in the archive."""

    NEW = "new"  # recorded, no archive version yet
    ARCHIVED = "archived"  # has a current archive version
    QUARANTINED = "quarantined"  # unreadable or hostile input; see Source.reason


class ArchiveKind(enum.StrEnum):
    """What an archive version's file holds."""

    AIC = "aic"  # a .aic file written by the codec
    PASSTHROUGH = "passthrough"  # the original's bytes, kept because a .aic would not be smaller


class JobKind(enum.StrEnum):
    COMPRESS = "compress"
    RECOMPRESS = "recompress"
    RESTORE = "restore"
    VERIFY = "verify"


class JobState(enum.StrEnum):
    """A job's life; see lease.py for the transitions."""

    PENDING = "pending"  # waiting for a worker
    RUNNING = "running"  # leased by lease_owner until lease_expires_at
    DONE = "done"
    FAILED = "failed"  # its last attempt failed; claimable again once not_before has passed
    QUARANTINED = "quarantined"  # given up on; quarantine_reason says why


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Source(Base):
    """One piece of content, identified by the sha256 of its file bytes."""

    __tablename__ = "sources"
    __table_args__ = (Index("ix_sources_state", "state"),)  # quarantined and new ones, among millions

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    mode: Mapped[str | None] = mapped_column(String(16))
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    state: Mapped[SourceState] = mapped_column(_enum(SourceState, "source_state"), default=SourceState.NEW)
    reason: Mapped[str | None] = mapped_column(Text)

    paths: Mapped[list[SourcePath]] = relationship(back_populates="source", order_by="SourcePath.id")
    versions: Mapped[list[ArchiveVersion]] = relationship(
        back_populates="source", order_by="ArchiveVersion.id", foreign_keys="ArchiveVersion.source_id"
    )


TRIGRAM_INDEX = "ix_source_paths_path_trigram"


class SourcePath(Base):
    """A place where a source's content was found, in the watched folder it came from."""

    __tablename__ = "source_paths"
    __table_args__ = (
        Index("ix_source_paths_folder", "folder"),
        # `--folder DIR` finds paths under DIR by a bytewise range on the path (admin/selection.py).
        # PostgreSQL's unique index is in the database's collation and can't answer it; SQLite's
        # can, so there this index is kept empty (WHERE 0) rather than a copy of that one.
        Index(
            "ix_source_paths_path_pattern",
            "path",
            postgresql_ops={"path": "text_pattern_ops"},
            sqlite_where=text("0"),
        ),
        # The dashboard's `q` (ILIKE '%part%'): a pg_trgm GIN index on PostgreSQL, made by 0005 only
        # where the server has pg_trgm and the migrating user may create it (docs/scale.md); empty
        # on SQLite, which reads every path for a substring whatever the index.
        Index(
            TRIGRAM_INDEX,
            "path",
            postgresql_using="gin",
            postgresql_ops={"path": "gin_trgm_ops"},
            sqlite_where=text("0"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"), index=True)
    folder: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text, unique=True)
    mtime: Mapped[datetime] = mapped_column(UtcDateTime)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    source: Mapped[Source] = relationship(back_populates="paths")


class CodecModel(Base):
    """A codec's weights, identified by their sha256 (the id a `.aic` file names)."""

    __tablename__ = "models"
    __table_args__ = (
        Index(
            "uq_models_default",
            "is_default",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )

    id: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH), primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)


class ArchiveVersion(Base):
    """One `.aic` file written for a source; the current one has superseded_by NULL."""

    __tablename__ = "archive_versions"
    __table_args__ = (
        Index(
            "uq_archive_versions_current",
            "source_id",
            unique=True,
            sqlite_where=text("superseded_by IS NULL"),
            postgresql_where=text("superseded_by IS NULL"),
        ),
        # stats reads its quantiles and histogram from these, and ls --below-ratio filters on the first;
        # superseded_by makes them covering on SQLite (which does not count the WHERE's columns), and
        # reference_version_id splits PSNR against the original from PSNR against a version (0005).
        *(
            Index(
                f"ix_archive_versions_current_{column}",
                *columns,
                sqlite_where=text("superseded_by IS NULL"),
                postgresql_where=text("superseded_by IS NULL"),
            )
            for column, columns in (
                ("achieved_ratio", ("achieved_ratio", "superseded_by")),
                ("psnr", ("psnr", "superseded_by", "reference_version_id")),
            )
        ),
        Index("ix_archive_versions_created_at", "created_at"),  # the dashboard's per-hour chart (0005)
        Index(
            "ix_archive_versions_damaged",
            "damaged_at",
            sqlite_where=text("damaged_at IS NOT NULL"),
            postgresql_where=text("damaged_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="RESTRICT"), index=True)
    path: Mapped[str] = mapped_column(Text, unique=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(SHA256_HEX_LENGTH))
    target_ratio: Mapped[float] = mapped_column(RATIO)
    achieved_ratio: Mapped[float] = mapped_column(Float)
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"), index=True)
    psnr: Mapped[float | None] = mapped_column(Float)  # NULL for a passthrough: bit-exact
    ms_ssim: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    superseded_by: Mapped[int | None] = mapped_column(ForeignKey("archive_versions.id", ondelete="RESTRICT"))
    kind: Mapped[ArchiveKind] = mapped_column(
        _enum(ArchiveKind, "archive_kind"), default=ArchiveKind.AIC, server_default=ArchiveKind.AIC.value
    )
    # Quality was measured against this earlier version (its original was gone); NULL: the original.
    reference_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("archive_versions.id", ondelete="RESTRICT")
    )
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # its file was deleted on purpose
    damaged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # verify found it missing or altered

    source: Mapped[Source] = relationship(back_populates="versions", foreign_keys=[source_id])


class Job(Base):
    """A unit of work; the broker carries only its id (DESIGN.md, invariant 1)."""

    __tablename__ = "jobs"
    __table_args__ = (
        # Invariant 3: the same content is never compressed twice with the same ratio and model.
        Index(
            "uq_jobs_compress",
            "source_id",
            "target_ratio",
            "model_id",
            unique=True,
            sqlite_where=text("kind = 'compress'"),
            postgresql_where=text("kind = 'compress'"),
        ),
        CheckConstraint(
            "kind <> 'compress' OR (target_ratio IS NOT NULL AND model_id IS NOT NULL)",
            name="compress_has_ratio_and_model",
        ),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
        Index("ix_jobs_claim", "state", "not_before"),
        Index("ix_jobs_finished", "state", "finished_at"),  # status: jobs done in the last minutes
        Index("ix_jobs_state_updated", "state", "updated_at"),  # status: the latest failures (0005)
        Index("ix_jobs_state_id", "state", "id"),  # a quarantine page: one state's jobs by id (0006)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind, "job_kind"))
    state: Mapped[JobState] = mapped_column(_enum(JobState, "job_state"), default=JobState.PENDING)
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="RESTRICT"), index=True)
    target_ratio: Mapped[float | None] = mapped_column(RATIO)
    model_id: Mapped[str | None] = mapped_column(ForeignKey("models.id", ondelete="RESTRICT"))
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    not_before: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    quarantine_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class SourceFigures(Base):
    """What one source adds to its folder's totals, as the last trigger computed it (revision 0006).

    Written only by the triggers that 0006 creates: on any change to a source, its paths or its
    versions they subtract this row from FolderTotals, compute it again from the rows and add
    it back, so a change made by any writer (or by hand in SQL) keeps the totals exact.
    """

    __tablename__ = "source_figures"

    source_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    folder: Mapped[str | None] = mapped_column(Text)  # the primary path's (overview.PRIMARY)
    files: Mapped[int] = mapped_column(Integer)  # 1 with a current version, else 0
    bytes_in: Mapped[int] = mapped_column(BigInteger)  # Source.size with a current version, else 0
    bytes_out: Mapped[int] = mapped_column(BigInteger)  # the current version's bytes
    raw: Mapped[int] = mapped_column(BigInteger)  # achieved_ratio x bytes, rounded: W x H x 3
    bytes_on_disk: Mapped[int] = mapped_column(BigInteger)  # every version not removed


class FolderTotals(Base):
    """Sums of SourceFigures by folder, kept by the database's triggers (revision 0006): what
    `stats` reads instead of a pass over every source. Readers sum the rows by folder: on
    PostgreSQL each change appends its difference, and a folder's rows are folded into one
    every few hundred (SQLite keeps one row per folder)."""

    __tablename__ = "folder_totals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    folder: Mapped[str | None] = mapped_column(Text, index=True)  # NULL: sources without a path
    sources: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[int] = mapped_column(BigInteger)
    bytes_in: Mapped[int] = mapped_column(BigInteger)
    bytes_out: Mapped[int] = mapped_column(BigInteger)
    raw: Mapped[int] = mapped_column(BigInteger)
    bytes_on_disk: Mapped[int] = mapped_column(BigInteger)
