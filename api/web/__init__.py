"""The web pages for a lab technician: sign in, submit a batch, follow it, inspect a slide.

Pages are server-rendered shells; the data comes from the JSON API (/api/v1) through
small ES modules under static/, which send the lab's key from sessionStorage. The key
therefore never reaches a URL, a form post or a server log.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint

HERE = Path(__file__).resolve().parent

# static_url_path keeps our files apart from any app-level /static folder.
bp = Blueprint(
    "web",
    __name__,
    template_folder=str(HERE / "templates"),
    static_folder=str(HERE / "static"),
    static_url_path="/web/static",
)

from api.web import pages as _pages  # noqa: E402,F401  (registers the routes on bp)
