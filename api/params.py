"""Query parameters, checked: a bad one is a 422 problem naming it and what is expected."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import cache

from flask import request

from bloodcount.services import InvalidRequest, PageRequest


def refuse_nul() -> None:
    """before_request hook: a NUL in the path, the query, a form field or the
    Idempotency-Key header is refused here.

    PostgreSQL text cannot hold NUL, so such a value used to reach the database and fail
    there as a 500; no id, filter or reference ever contains one.
    """

    def nul(*texts) -> bool:  # a part without a name has None for its key
        return any(isinstance(t, str) and "\x00" in t for t in texts)

    if request.mimetype == "multipart/form-data":
        refuse_files_as_fields()
    where = None
    if "\x00" in request.path:
        where = "the path"
    elif any(nul(k, v) for k, v in request.args.items(multi=True)):
        where = "a query parameter"
    elif request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded") and any(
        nul(k, v) for k, v in request.form.items(multi=True)
    ):
        where = "a form field"
    elif nul(request.headers.get("Idempotency-Key")):  # stored with the batch, as the rest
        where = "the Idempotency-Key header"
    if where is not None:
        raise InvalidRequest(
            f"{where} holds a NUL character (\\0); no id, parameter or field "
            "of this API can contain one"
        )


def refuse_files_as_fields() -> None:
    """A 'files' part without a filename is parsed as a text field, not a file.

    curl -F 'files=<slide.jpg' (instead of files=@slide.jpg) or a client that drops the
    filename sends one. Such a part used to be ignored: an image (which holds NUL bytes)
    was refused as 'a form field holds a NUL character', any other content beside real
    files was dropped without a word (the batch stored without it), and alone it was
    answered 'no slides'.
    """
    for name in ("files", "file"):
        if name in request.form:
            binary = any("\x00" in v for v in request.form.getlist(name))
            raise InvalidRequest(
                f"a '{name}' part came without a filename (or with one that broke its "
                "header, such as a name holding a line break), so it arrived as a text field"
                + (", holding NUL characters as an image does," if binary else "")
                + ", not a file; send every image as a file part with a plain filename "
                '(Content-Disposition: form-data; name="files"; filename="slide.jpg", '
                "or curl -F files=@slide.jpg)",
                parameter=name,
            )


def refuse_unknown_query() -> None:
    """before_request hook: a query parameter the operation does not document is refused.

    A lab that filters a count report with ``?submitted_from=...`` (the API's name is
    ``from``) would otherwise get every batch it ever sent, looking filtered: for a report
    that is worse than an error. The names come from api/openapi.yaml, so the document
    and the check cannot drift apart; routes it does not describe are not checked.
    """
    if request.url_rule is None or request.method in ("OPTIONS", "HEAD"):
        return
    known = documented_query(request.url_rule.rule, request.method.lower())
    if known is None:
        return
    unknown = sorted(set(request.args) - known)
    if unknown:
        takes = ", ".join(sorted(known)) if known else "no query parameters"
        named = ", ".join(repr(name) for name in unknown)
        raise InvalidRequest(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {named}; "
            f"{request.method} {request.url_rule.rule} takes {takes}",
            parameter=unknown[0],
        )


_FLASK_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@cache
def documented_query(rule: str, method: str) -> frozenset[str] | None:
    """Query parameter names the OpenAPI document gives ``method`` on the Flask ``rule``
    (path-level parameters included); None where it does not describe the operation."""
    from api.docs import load_spec

    spec = load_spec()
    item = spec["paths"].get(_FLASK_VARIABLE.sub(r"{\1}", rule))
    if item is None or method not in item:
        return None
    names = set()
    for parameter in [*item.get("parameters", []), *item[method].get("parameters", [])]:
        if "$ref" in parameter:
            parameter = spec["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[-1]]
        if parameter["in"] == "query":
            names.add(parameter["name"])
    return frozenset(names)


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
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        # Here, not at the database: 9999-12-31T23:00:00-05:00 is past year 9999 in UTC,
        # and converting it there raised OverflowError, a 500.
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidRequest(
            f"{name} {raw!r} is out of range once converted to UTC", parameter=name
        ) from None


def date_range() -> tuple[datetime | None, datetime | None]:
    """``from`` (inclusive) and ``to`` (exclusive), checked to make a range.

    A swapped or empty range used to answer an empty list or an all-zero report, which a
    lab reads as "nothing was submitted" rather than as its own typo; asking for one day
    as ``from=2026-01-05&to=2026-01-05`` was the same trap, since ``to`` is exclusive.
    """
    start, end = datetime_param("from"), datetime_param("to")
    if start is not None and end is not None and start >= end:
        raise InvalidRequest(
            f"from ({start.isoformat()}) must be before to ({end.isoformat()}); to is "
            "exclusive: for one day, give the next day as to",
            parameter="to",
        )
    return start, end


def choice_param(name: str, choices: tuple[str, ...]) -> str | None:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return None
    if raw not in choices:
        raise InvalidRequest(
            f"{name} must be one of {', '.join(choices)}, not {raw!r}", parameter=name
        )
    return raw
