"""`bloodcount db` and `bloodcount labs` through the real command, on a SQLite file."""

import pytest
from sqlalchemy import select

from bloodcount.cli import main
from bloodcount.db.engine import make_engine, make_session_factory, session_scope
from bloodcount.db.models import Lab
from bloodcount.labs import authenticate, hash_api_key


@pytest.fixture
def database(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("BLOODCOUNT_DATABASE_URL", url)
    assert main(["db", "upgrade"]) == 0
    return url


def _key_from(output: str) -> str:
    return output.strip().splitlines()[-1].rsplit(" ", 1)[-1]


def test_create_prints_key_once_and_stores_only_its_hash(database, capsys):
    assert main(["labs", "create", "North Lab"]) == 0
    key = _key_from(capsys.readouterr().out)
    assert key.startswith("bc_") and len(key) > 40
    engine = make_engine(database)
    with session_scope(make_session_factory(engine)) as session:
        lab = session.scalar(select(Lab))
        assert lab.api_key_hash == hash_api_key(key)
        assert key not in (lab.api_key_hash, lab.api_key_prefix)
        assert authenticate(session, key).name == "North Lab"
        assert authenticate(session, key + "x") is None
    main(["labs", "list"])
    listing = capsys.readouterr().out
    assert "North Lab" in listing and key not in listing
    engine.dispose()


def test_duplicate_name_is_refused(database, capsys):
    assert main(["labs", "create", "Twin"]) == 0
    assert main(["labs", "create", "Twin"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_revoked_and_rotated_keys(database, capsys):
    main(["labs", "create", "Rotor"])
    old = _key_from(capsys.readouterr().out)
    main(["labs", "rotate-key", "Rotor"])
    new = _key_from(capsys.readouterr().out)
    engine = make_engine(database)
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        assert authenticate(session, old) is None
        assert authenticate(session, new) is not None
    assert main(["labs", "revoke", "Rotor"]) == 0
    with session_scope(factory) as session:
        assert authenticate(session, new) is None
    assert main(["labs", "revoke", "Nobody"]) == 1
    engine.dispose()


def test_bad_setting_is_reported_not_raised(monkeypatch, capsys):
    monkeypatch.setenv("BLOODCOUNT_DATABASE_URL", "mysql://nope")
    assert main(["labs", "list"]) == 2
    assert "BLOODCOUNT_DATABASE_URL" in capsys.readouterr().err
