"""Labs and their API keys. A key is shown once, at creation; only its hash is stored."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bloodcount.db.models import Lab
from bloodcount.db.types import utcnow

KEY_PREFIX = "bc_"


class LabError(ValueError):
    """A lab operation that cannot be done as asked (duplicate name, unknown lab)."""


@dataclass(frozen=True)
class NewLab:
    id: int
    name: str
    api_key: str


def hash_api_key(api_key: str, pepper: str = "") -> str:
    """HMAC-SHA256 of the key. Keys are 256 random bits, so a fast hash is safe; the
    pepper keeps a stolen database from being enough to test guesses offline."""
    return hmac.new(pepper.encode(), api_key.encode(), hashlib.sha256).hexdigest()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_lab(session: Session, name: str, pepper: str = "") -> NewLab:
    name = name.strip()
    if not name or len(name) > 200:
        raise LabError("a lab name must be 1 to 200 characters")
    if session.scalar(select(Lab.id).where(Lab.name == name)) is not None:
        raise LabError(f"a lab named {name!r} already exists")
    api_key = new_api_key()
    lab = Lab(name=name, api_key_hash=hash_api_key(api_key, pepper), api_key_prefix=api_key[:8])
    session.add(lab)
    session.flush()
    return NewLab(id=lab.id, name=lab.name, api_key=api_key)


def rotate_key(session: Session, name: str, pepper: str = "") -> str:
    """Give a lab a new key; the old one stops working at once."""
    lab = _by_name(session, name)
    api_key = new_api_key()
    lab.api_key_hash = hash_api_key(api_key, pepper)
    lab.api_key_prefix = api_key[:8]
    lab.revoked_at = None
    return api_key


def revoke_lab(session: Session, name: str) -> None:
    _by_name(session, name).revoked_at = utcnow()


def list_labs(session: Session) -> list[Lab]:
    return list(session.scalars(select(Lab).order_by(Lab.name)))


def authenticate(session: Session, api_key: str, pepper: str = "") -> Lab | None:
    """The active lab holding ``api_key``, or None."""
    if not api_key or len(api_key) > 200:
        return None
    digest = hash_api_key(api_key, pepper)
    lab = session.scalar(select(Lab).where(Lab.api_key_hash == digest))
    # The lookup is by an unguessable digest; compare_digest keeps the final check
    # constant-time as well.
    if lab is None or not hmac.compare_digest(lab.api_key_hash, digest):
        return None
    if lab.revoked_at is not None:
        return None
    return lab


def _by_name(session: Session, name: str) -> Lab:
    lab = session.scalar(select(Lab).where(Lab.name == name))
    if lab is None:
        raise LabError(f"no lab named {name!r}")
    return lab


def describe(lab: Lab) -> dict[str, str | int | None]:
    revoked: datetime | None = lab.revoked_at
    return {
        "id": lab.id,
        "name": lab.name,
        "key": lab.api_key_prefix + "…",
        "created": lab.created_at.isoformat(timespec="seconds"),
        "revoked": revoked.isoformat(timespec="seconds") if revoked else None,
    }
