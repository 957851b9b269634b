"""running totals by folder for stats, kept by the database; jobs (state, id)

`stats` summed every source joined to its primary path and current version: 2.0 to 3.5 s at
a million sources. Now it reads folder_totals, a few rows, kept exact by triggers on sources,
source_paths and archive_versions, so every writer (the worker's commit, a recompress that
supersedes a version, retirement, quarantine, deletion, a bulk insert, an edit by hand in
SQL) keeps them right with no Python on its path.

source_figures holds, per source, what it added to its folder's row: the primary path's
folder (the first path not removed, else the first), and with a current version 1 file,
Source.size in, the version's bytes out and raw bytes (achieved_ratio x bytes rounded to an
integer: W x H x 3, so sums are exact and never drift); beside them the bytes of every
version not removed. After any row change, a trigger takes the changed source's row off its
folder's totals, computes it again from the tables and adds it back: on SQLite into the
folder's one row, on PostgreSQL as rows of differences that are folded into one from time
to time (PG_FOLD). folder_totals' rows are summed by folder to read them. Because each trigger
recomputes from the tables rather than applying a difference, the order in which triggers
run does not matter: PostgreSQL runs AFTER ROW triggers at the end of the statement, SQLite
after each row, and a statement that changes several rows of one source is right on both.

TRUNCATE is not followed (it fires no row trigger); the catalog never truncates.

jobs (state, id): a quarantine page reads one state's jobs in id order from it, where both
databases sorted every job in that state.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FIGURES = ("files", "bytes_in", "bytes_out", "raw", "bytes_on_disk")
# floor(x + 0.5) on both: SQLite's CAST truncates toward zero, PostgreSQL's rounds half to even.
RAW = {
    "sqlite": "CAST(v.achieved_ratio * v.bytes + 0.5 AS INTEGER)",
    "postgresql": "CAST(floor(v.achieved_ratio * v.bytes + 0.5) AS BIGINT)",
}
PRIMARY_FOLDER = (
    "(SELECT p.folder FROM source_paths AS p WHERE p.source_id = s.id"
    " ORDER BY p.removed_at IS NOT NULL, p.id LIMIT 1)"
)


def _figures(dialect: str, source: str) -> str:
    """SELECT of one source's source_figures row (none if there is no such source)."""
    return (
        f"SELECT s.id AS source_id, {PRIMARY_FOLDER} AS folder,"
        " CASE WHEN v.id IS NULL THEN 0 ELSE 1 END AS files,"
        " CASE WHEN v.id IS NULL THEN 0 ELSE s.size END AS bytes_in,"
        f" coalesce(v.bytes, 0) AS bytes_out, coalesce({RAW[dialect]}, 0) AS raw,"
        " (SELECT coalesce(sum(a.bytes), 0) FROM archive_versions AS a"
        "  WHERE a.source_id = s.id AND a.removed_at IS NULL) AS bytes_on_disk"
        " FROM sources AS s"
        " LEFT JOIN archive_versions AS v ON v.source_id = s.id AND v.superseded_by IS NULL"
        f" WHERE s.id = {source}"
    )


def _seed(dialect: str) -> None:
    """Every source's figures in one pass (a GROUP BY per table, not a lookup per source),
    then their sums by folder."""
    columns = ", ".join(("source_id", "folder", *FIGURES))
    op.execute(
        f"INSERT INTO source_figures ({columns})"
        " SELECT s.id, pp.folder, CASE WHEN v.id IS NULL THEN 0 ELSE 1 END,"
        " CASE WHEN v.id IS NULL THEN 0 ELSE s.size END, coalesce(v.bytes, 0),"
        f" coalesce({RAW[dialect]}, 0), coalesce(kept.bytes, 0)"
        " FROM sources AS s"
        " LEFT JOIN archive_versions AS v ON v.source_id = s.id AND v.superseded_by IS NULL"
        " LEFT JOIN (SELECT source_id, coalesce(min(CASE WHEN removed_at IS NULL THEN id END), min(id)) AS id"
        "  FROM source_paths GROUP BY source_id) AS primary_id ON primary_id.source_id = s.id"
        " LEFT JOIN source_paths AS pp ON pp.id = primary_id.id"
        " LEFT JOIN (SELECT source_id, sum(bytes) AS bytes FROM archive_versions WHERE removed_at IS NULL"
        "  GROUP BY source_id) AS kept ON kept.source_id = s.id"
    )
    sums = ", ".join(f"sum({figure})" for figure in FIGURES)
    op.execute(
        f"INSERT INTO folder_totals (folder, sources, {', '.join(FIGURES)})"
        f" SELECT folder, count(*), {sums} FROM source_figures GROUP BY folder ORDER BY folder"
    )


# What each table's triggers follow: the column naming the source, and the columns that
# change a source's figures (the primary path hangs on a path's id, folder and removed_at).
FOLLOWED = {
    "sources": ("id", ("id", "size")),
    "source_paths": ("source_id", ("id", "source_id", "folder", "removed_at")),
    "archive_versions": (
        "source_id", ("source_id", "superseded_by", "bytes", "achieved_ratio", "removed_at")
    ),
}

# PostgreSQL adds rows rather than updating one per folder: a row updated many times in one
# transaction (a bulk insert, a scan that records thousands of files) leaves a chain of row
# versions that each later update walks, and 8,000 sources took 35 s to insert. Each change
# appends its difference; every FOLD_EVERY rows the folder just written is folded into one
# row, taking only rows no other transaction holds (SKIP LOCKED: the fold never waits). The
# lock on a source's source_figures row does make two transactions that change one source
# wait for each other, and two that change two sources in opposite orders can deadlock;
# PostgreSQL then aborts one, and the project's writers retry a deadlock as transient.
FOLD_EVERY = 256

PG_FOLD = f"""
CREATE FUNCTION aic_fold_folder_totals(wanted text) RETURNS void LANGUAGE sql AS $$
    WITH taken AS (
        DELETE FROM folder_totals WHERE id IN (
            SELECT id FROM folder_totals WHERE folder IS NOT DISTINCT FROM wanted FOR UPDATE SKIP LOCKED
        ) RETURNING *
    )
    INSERT INTO folder_totals (folder, sources, {", ".join(FIGURES)})
    SELECT wanted, sum(sources), {", ".join(f"sum({figure})" for figure in FIGURES)} FROM taken
    HAVING count(*) > 0
$$
"""

PG_REFRESH = f"""
CREATE FUNCTION aic_refresh_source_figures(changed integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    was source_figures%ROWTYPE;
    had boolean;
    fig record;
    exists_now boolean;
    added integer;
BEGIN
    -- The lock orders concurrent changes to one source: the second reads the first's figures.
    SELECT * INTO was FROM source_figures WHERE source_id = changed FOR UPDATE;
    had := FOUND;
    SELECT * INTO fig FROM ({_figures("postgresql", "changed")}) AS f;
    exists_now := FOUND;
    IF had AND exists_now AND was.folder IS NOT DISTINCT FROM fig.folder THEN
        IF (was.files, was.bytes_in, was.bytes_out, was.raw, was.bytes_on_disk)
         = (fig.files, fig.bytes_in, fig.bytes_out, fig.raw, fig.bytes_on_disk) THEN
            RETURN;
        END IF;
        INSERT INTO folder_totals (folder, sources, files, bytes_in, bytes_out, raw, bytes_on_disk)
        VALUES (fig.folder, 0, fig.files - was.files, fig.bytes_in - was.bytes_in,
                fig.bytes_out - was.bytes_out, fig.raw - was.raw, fig.bytes_on_disk - was.bytes_on_disk)
        RETURNING id INTO added;
    ELSE
        IF had THEN
            INSERT INTO folder_totals (folder, sources, files, bytes_in, bytes_out, raw, bytes_on_disk)
            VALUES (was.folder, -1, -was.files, -was.bytes_in, -was.bytes_out, -was.raw, -was.bytes_on_disk)
            RETURNING id INTO added;
        END IF;
        IF exists_now THEN
            INSERT INTO folder_totals (folder, sources, files, bytes_in, bytes_out, raw, bytes_on_disk)
            VALUES (fig.folder, 1, fig.files, fig.bytes_in, fig.bytes_out, fig.raw, fig.bytes_on_disk)
            RETURNING id INTO added;
        END IF;
    END IF;
    -- The row is updated in place while the source lives: a transaction waiting on its lock
    -- must find it again (a row deleted and inserted anew is skipped by the waiter, which
    -- then inserted a second one: a unique violation in a worker's commit).
    IF had AND exists_now THEN
        UPDATE source_figures SET folder = fig.folder, files = fig.files, bytes_in = fig.bytes_in,
            bytes_out = fig.bytes_out, raw = fig.raw, bytes_on_disk = fig.bytes_on_disk
        WHERE source_id = changed;
    ELSIF had THEN
        DELETE FROM source_figures WHERE source_id = changed;
    ELSIF exists_now THEN
        INSERT INTO source_figures (source_id, folder, files, bytes_in, bytes_out, raw, bytes_on_disk)
        VALUES (changed, fig.folder, fig.files, fig.bytes_in, fig.bytes_out, fig.raw, fig.bytes_on_disk);
    END IF;
    IF added % {FOLD_EVERY} = 0 THEN
        PERFORM aic_fold_folder_totals(CASE WHEN exists_now THEN fig.folder ELSE was.folder END);
    END IF;
END;
$$
"""

PG_FOLLOW = """
CREATE FUNCTION aic_follow_source_figures() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    before_id integer;
    after_id integer;
BEGIN
    IF TG_TABLE_NAME = 'sources' THEN
        IF TG_OP <> 'INSERT' THEN before_id := OLD.id; END IF;
        IF TG_OP <> 'DELETE' THEN after_id := NEW.id; END IF;
    ELSE
        IF TG_OP <> 'INSERT' THEN before_id := OLD.source_id; END IF;
        IF TG_OP <> 'DELETE' THEN after_id := NEW.source_id; END IF;
    END IF;
    IF before_id IS NOT NULL THEN
        PERFORM aic_refresh_source_figures(before_id);
    END IF;
    IF after_id IS DISTINCT FROM before_id THEN
        PERFORM aic_refresh_source_figures(after_id);
    END IF;
    RETURN NULL;
END;
$$
"""


def _trigger(table: str) -> str:
    return f"aic_figures_{table}"


def _sqlite_refresh(source: str) -> str:
    """The statements of one refresh in an SQLite trigger body: take the source's figures off
    its folder's row, compute them again, add them to the (perhaps new) folder's row."""
    mine = f"(SELECT min(t.id) FROM source_figures AS m JOIN folder_totals AS t ON t.folder IS m.folder" \
           f" WHERE m.source_id = {source})"

    def change(sign: str) -> str:
        figures = ", ".join(
            f"{figure} = {figure} {sign}"
            f" (SELECT m.{figure} FROM source_figures AS m WHERE m.source_id = {source})"
            for figure in FIGURES
        )
        return f"UPDATE folder_totals SET sources = sources {sign} 1, {figures} WHERE id = {mine};"

    columns = ", ".join(("source_id", "folder", *FIGURES))
    return f"""
    {change("-")}
    DELETE FROM source_figures WHERE source_id = {source};
    INSERT INTO source_figures ({columns}) {_figures("sqlite", source)};
    INSERT INTO folder_totals (folder, sources, {", ".join(FIGURES)})
        SELECT m.folder, 0, 0, 0, 0, 0, 0 FROM source_figures AS m WHERE m.source_id = {source}
        AND NOT EXISTS (SELECT 1 FROM folder_totals AS t WHERE t.folder IS m.folder);
    {change("+")}"""


def _sqlite_triggers(table: str, key: str, columns: tuple[str, ...]) -> list[str]:
    name = _trigger(table)
    on_update = f"AFTER UPDATE OF {', '.join(columns)} ON {table}"
    return [
        f"CREATE TRIGGER {name}_insert AFTER INSERT ON {table} BEGIN {_sqlite_refresh(f'NEW.{key}')} END",
        f"CREATE TRIGGER {name}_delete AFTER DELETE ON {table} BEGIN {_sqlite_refresh(f'OLD.{key}')} END",
        f"CREATE TRIGGER {name}_update {on_update} BEGIN {_sqlite_refresh(f'NEW.{key}')} END",
        # A row that moved to another source leaves the old one's figures to be done again too.
        f"CREATE TRIGGER {name}_moved {on_update} WHEN OLD.{key} IS NOT NEW.{key}"
        f" BEGIN {_sqlite_refresh(f'OLD.{key}')} END",
    ]


def upgrade() -> None:
    op.create_index("ix_jobs_state_id", "jobs", ["state", "id"])
    op.create_table(
        "source_figures",
        sa.Column("source_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("folder", sa.Text(), nullable=True),
        sa.Column("files", sa.Integer(), nullable=False),
        *(sa.Column(figure, sa.BigInteger(), nullable=False) for figure in FIGURES[1:]),
        sa.PrimaryKeyConstraint("source_id", name=op.f("pk_source_figures")),
    )
    op.create_table(
        "folder_totals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("folder", sa.Text(), nullable=True),
        *(sa.Column(figure, sa.BigInteger(), nullable=False) for figure in ("sources", *FIGURES)),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_folder_totals")),
    )
    op.create_index(op.f("ix_folder_totals_folder"), "folder_totals", ["folder"])
    dialect = op.get_bind().dialect.name
    _seed(dialect)
    if dialect == "sqlite":
        for table, (key, columns) in FOLLOWED.items():
            for statement in _sqlite_triggers(table, key, columns):
                op.execute(statement)
        return
    op.execute(PG_FOLD)
    op.execute(PG_REFRESH)
    op.execute(PG_FOLLOW)
    for table, (_, columns) in FOLLOWED.items():
        op.execute(
            f"CREATE TRIGGER {_trigger(table)} AFTER INSERT OR DELETE OR UPDATE OF {', '.join(columns)}"
            f" ON {table} FOR EACH ROW EXECUTE FUNCTION aic_follow_source_figures()"
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in FOLLOWED:
        if sqlite:
            for event in ("insert", "delete", "update", "moved"):
                op.execute(f"DROP TRIGGER {_trigger(table)}_{event}")
        else:
            op.execute(f"DROP TRIGGER {_trigger(table)} ON {table}")
    if not sqlite:
        op.execute("DROP FUNCTION aic_follow_source_figures()")
        op.execute("DROP FUNCTION aic_refresh_source_figures(integer)")
        op.execute("DROP FUNCTION aic_fold_folder_totals(text)")
    op.drop_index(op.f("ix_folder_totals_folder"), "folder_totals")
    op.drop_table("folder_totals")
    op.drop_table("source_figures")
    op.drop_index("ix_jobs_state_id", "jobs")
