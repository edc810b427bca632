"""CSV that spreadsheet programs open as data: the API's reports and `bloodcount analyze --csv`.

Labs open these files in Excel or LibreOffice, which run a cell that starts with ``=``,
``+``, ``-`` or ``@`` as a formula: a file name such as ``=HYPERLINK(...).jpg`` must arrive
as text (OWASP: CSV injection). Kept free of database imports so the CLI can use it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import datetime
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """One value as written: datetimes in ISO 8601, a slide's warnings as their codes,
    text a spreadsheet would run prefixed with an apostrophe."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):  # a slide's warnings: their codes
        value = ";".join(w["code"] for w in value)
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def to_csv(rows: Iterable[dict[str, Any]], fields: list[str]) -> str:
    """CSV text with a header row; missing values empty; every value through :func:`cell`."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: cell(v) for k, v in row.items()})
    return out.getvalue()
