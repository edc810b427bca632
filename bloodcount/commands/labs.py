"""`bloodcount labs create|list|revoke|rotate-key`: the labs allowed to use the service."""

from __future__ import annotations

import argparse
import sys

from bloodcount.db.engine import session_scope
from bloodcount.resources import Resources


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("labs", help="manage labs and their API keys")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    create = actions.add_parser("create", help="add a lab and print its API key (shown once)")
    create.add_argument("name")
    create.set_defaults(handler=_create)

    listing = actions.add_parser("list", help="list labs (keys are never shown)")
    listing.set_defaults(handler=_list)

    revoke = actions.add_parser("revoke", help="stop a lab's key from working")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_revoke)

    rotate = actions.add_parser("rotate-key", help="give a lab a new key; the old one stops")
    rotate.add_argument("name")
    rotate.set_defaults(handler=_rotate)


def _run(action) -> int:
    from bloodcount.labs import LabError

    resources = Resources.from_env()
    try:
        with session_scope(resources.sessions) as session:
            return action(session, resources.settings)
    except LabError as exc:
        print(f"bloodcount: {exc}", file=sys.stderr)
        return 1
    finally:
        resources.close()


def _create(args: argparse.Namespace) -> int:
    from bloodcount.labs import create_lab

    def action(session, settings):
        lab = create_lab(session, args.name, settings.api_key_pepper)
        print(f"created lab {lab.name!r} (id {lab.id})")
        print(f"API key (shown only now; store it safely): {lab.api_key}")
        return 0

    return _run(action)


def _list(args: argparse.Namespace) -> int:
    from bloodcount.labs import describe, list_labs

    def action(session, settings):
        for lab in list_labs(session):
            row = describe(lab)
            state = f"revoked {row['revoked']}" if row["revoked"] else "active"
            print(f"{row['id']:>4}  {row['name']:<30} {row['key']:<12} {state}")
        return 0

    return _run(action)


def _revoke(args: argparse.Namespace) -> int:
    from bloodcount.labs import revoke_lab

    def action(session, settings):
        revoke_lab(session, args.name)
        print(f"revoked the key of lab {args.name!r}")
        return 0

    return _run(action)


def _rotate(args: argparse.Namespace) -> int:
    from bloodcount.labs import rotate_key

    def action(session, settings):
        key = rotate_key(session, args.name, settings.api_key_pepper)
        print(f"new API key for {args.name!r} (shown only now): {key}")
        return 0

    return _run(action)
