"""Pages of a listing: a window (page, per_page) over an ordered query, with its total."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from bloodcount.services.errors import InvalidRequest

MAX_PER_PAGE = 200
# Far past any real listing, and inside a 64-bit OFFSET (10**30 made PostgreSQL fail: 500).
MAX_PAGE = 1_000_000


@dataclass(frozen=True)
class PageRequest:
    page: int = 1
    per_page: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.page <= MAX_PAGE:
            raise InvalidRequest(f"page must be between 1 and {MAX_PAGE:,}", parameter="page")
        if not 1 <= self.per_page <= MAX_PER_PAGE:
            raise InvalidRequest(
                f"per_page must be between 1 and {MAX_PER_PAGE}", parameter="per_page"
            )


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    page: int
    per_page: int
    total: int

    @property
    def has_next(self) -> bool:
        return self.page * self.per_page < self.total


def fetch_page(session: Session, query: Select, request: PageRequest, row_to_item) -> Page:
    """Run ``query`` (already ordered) for one page, and count all its rows."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    rows = session.execute(
        query.limit(request.per_page).offset((request.page - 1) * request.per_page)
    )
    return Page([row_to_item(r) for r in rows], request.page, request.per_page, total or 0)
