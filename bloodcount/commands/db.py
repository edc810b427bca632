"""`bloodcount db upgrade|downgrade|current`: schema migrations."""

from __future__ import annotations

import argparse

from bloodcount.config import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="create or migrate the results database")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    up = actions.add_parser("upgrade", help="migrate to a revision (default: the newest)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_upgrade)

    down = actions.add_parser("downgrade", help="migrate back to a revision ('base' empties it)")
    down.add_argument("revision")
    down.set_defaults(handler=_downgrade)

    current = actions.add_parser("current", help="print the database's revision")
    current.set_defaults(handler=_current)


def _upgrade(args: argparse.Namespace) -> int:
    from bloodcount.db import migrate

    url = load_settings().database_url
    migrate.upgrade(url, args.revision)
    print(f"database at revision {migrate.current_revision(url)}")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    from bloodcount.db import migrate

    url = load_settings().database_url
    migrate.downgrade(url, args.revision)
    print(f"database at revision {migrate.current_revision(url) or 'base'}")
    return 0


def _current(args: argparse.Namespace) -> int:
    from bloodcount.db import migrate

    print(migrate.current_revision(load_settings().database_url) or "base (empty)")
    return 0
