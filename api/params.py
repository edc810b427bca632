"""Query parameters, checked: a bad one is a 422 problem naming it and what is expected."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import request

from bloodcount.services import InvalidRequest, PageRequest


def refuse_nul() -> None:
    """before_request hook: a NUL in the path, the query or a form field is refused here.

    PostgreSQL text cannot hold NUL, so such a value used to reach the database and fail
    there as a 500; no id, filter or reference ever contains one.
    """

    def nul(*texts) -> bool:  # a part without a name has None for its key
        return any(isinstance(t, str) and "\x00" in t for t in texts)

    where = None
    if "\x00" in request.path:
        where = "the path"
    elif any(nul(k, v) for k, v in request.args.items(multi=True)):
        where = "a query parameter"
    elif request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded") and any(
        nul(k, v) for k, v in request.form.items(multi=True)
    ):
        where = "a form field"
    if where is not None:
        raise InvalidRequest(
            f"{where} holds a NUL character (\\0); no id, parameter or field "
            "of this API can contain one"
        )


def int_param(name: str, default: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidRequest(
            f"{name} must be a whole number, not {raw!r}", parameter=name
        ) from None


def page_request() -> PageRequest:
    return PageRequest(page=int_param("page", 1), per_page=int_param("per_page", 50))


def datetime_param(name: str) -> datetime | None:
    """An ISO 8601 date (``2026-01-31``, midnight UTC) or datetime; naive means UTC."""
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 date or datetime such as 2026-01-31 or "
            f"2026-01-31T08:00:00Z, not {raw!r}",
            parameter=name,
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def choice_param(name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise InvalidRequest(
            f"{name} must be one of {', '.join(choices)}, not {raw!r}", parameter=name
        )
    return raw
