"""Migrations on empty SQLite and PostgreSQL databases: up, down, up; one head; no drift."""

import json
import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from bloodcount.db import migrate
from bloodcount.db.engine import make_engine
from bloodcount.db.models import Base

pytestmark = pytest.mark.integration

TABLES = {"labs", "batches", "slides", "analyses", "cells"}
VIEW_COLUMNS = [
    "slide_id",
    "lab_id",
    "lab",
    "batch_id",
    "reference",
    "position",
    "file",
    "status",
    "error",
    "rbc_count",
    "wbc_count",
    "platelet_count",
    "model_name",
    "model_version",
    "model_sha256",
    "submitted_at",
    "finished_at",
    "rbc_frame_count",
    "wbc_frame_count",
    "platelet_frame_count",
    "warnings",
]


@pytest.fixture
def sqlite_url(tmp_path):
    return f"sqlite:///{tmp_path}/bloodcount.db"


@pytest.fixture
def fresh_postgres_url(postgres_url):
    """A throw-away schema on the real server, so tests never touch each other's tables."""
    schema = f"t_{uuid.uuid4().hex[:10]}"
    admin = make_engine(postgres_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in postgres_url else "?"
    yield f"{postgres_url}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request):
    return request.getfixturevalue(
        "sqlite_url" if request.param == "sqlite" else "fresh_postgres_url"
    )


def _tables_and_views(url):
    engine = make_engine(url)
    try:
        inspector = inspect(engine)
        return set(inspector.get_table_names()), set(inspector.get_view_names())
    finally:
        engine.dispose()


def test_exactly_one_head():
    assert len(migrate.heads()) == 1


def test_upgrade_downgrade_upgrade(empty_database):
    migrate.upgrade(empty_database)
    tables, views = _tables_and_views(empty_database)
    assert TABLES <= tables
    assert "count_report" in views
    assert migrate.current_revision(empty_database) == migrate.heads()[0]

    migrate.downgrade(empty_database, "base")
    tables, views = _tables_and_views(empty_database)
    assert not (TABLES & tables)
    assert "count_report" not in views
    assert migrate.current_revision(empty_database) is None

    migrate.upgrade(empty_database)
    assert TABLES <= _tables_and_views(empty_database)[0]


def test_models_match_migrations(empty_database):
    migrate.upgrade(empty_database)
    engine = make_engine(empty_database)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_object": lambda o, n, t, r, c: (
                        not (t == "table" and n == "count_report")
                    ),
                },
            )
            diff = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ; write a revision: {diff}"


def test_count_report_view_columns_and_rows(empty_database):
    from bloodcount.db.engine import make_session_factory, session_scope
    from bloodcount.db.models import Batch, Slide
    from bloodcount.labs import create_lab

    migrate.upgrade(empty_database)
    engine = make_engine(empty_database)
    try:
        with session_scope(make_session_factory(engine)) as session:
            lab = create_lab(session, "View Lab")
            batch = Batch(lab_id=lab.id, reference="REF-1", slide_count=1)
            session.add(batch)
            session.flush()
            session.add(
                Slide(
                    batch_id=batch.id,
                    lab_id=lab.id,
                    filename="a.jpg",
                    object_key="k",
                    status="done",
                    rbc_count=20,
                    wbc_count=1,
                    platelet_count=2,
                    rbc_frame_count=18,
                    wbc_frame_count=1,
                    platelet_frame_count=2,
                    warnings=[{"code": "no_red_cells", "message": "none found"}],
                    model_name="m",
                    model_version="1",
                )
            )
        with engine.connect() as connection:
            result = connection.execute(text("SELECT * FROM count_report"))
            assert list(result.keys()) == VIEW_COLUMNS
            row = result.mappings().one()
        assert (row["lab"], row["reference"], row["file"]) == ("View Lab", "REF-1", "a.jpg")
        assert (row["rbc_count"], row["wbc_count"], row["platelet_count"]) == (20, 1, 2)
        frame = (row["rbc_frame_count"], row["wbc_frame_count"], row["platelet_frame_count"])
        assert frame == (18, 1, 2)
        # JSON on PostgreSQL, its text on SQLite: either way the same list to a reader.
        warnings = row["warnings"]
        warnings = json.loads(warnings) if isinstance(warnings, str) else warnings
        assert warnings == [{"code": "no_red_cells", "message": "none found"}]
    finally:
        engine.dispose()


def test_slides_counted_before_0004_keep_null_warnings_and_0003_comes_back(empty_database):
    migrate.upgrade(empty_database, "0003")
    engine = make_engine(empty_database)
    try:
        # Raw SQL: the models describe the head revision, not 0003.
        t = {"t": "2026-01-01 00:00:00"}
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO labs (id, name, api_key_hash, api_key_prefix, created_at) "
                    "VALUES (1, 'L', 'h', 'p', :t)"
                ),
                t,
            )
            connection.execute(
                text(
                    "INSERT INTO batches (id, lab_id, slide_count, created_at, updated_at) "
                    "VALUES ('b', 1, 1, :t, :t)"
                ),
                t,
            )
            connection.execute(
                text(
                    "INSERT INTO slides (id, batch_id, lab_id, position, filename, object_key, "
                    "status, attempts, rbc_count, created_at, updated_at) "
                    "VALUES ('s', 'b', 1, 0, 'a.jpg', 'k', 'done', 1, 20, :t, :t)"
                ),
                t,
            )
        migrate.upgrade(empty_database)
        with engine.connect() as connection:
            row = connection.execute(text("SELECT * FROM count_report")).mappings().one()
        assert row["rbc_count"] == 20 and row["warnings"] is None
        migrate.downgrade(empty_database, "0003")
        with engine.connect() as connection:
            result = connection.execute(text("SELECT * FROM count_report"))
            assert list(result.keys()) == VIEW_COLUMNS[:-1]
            assert result.mappings().one()["rbc_count"] == 20
    finally:
        engine.dispose()
