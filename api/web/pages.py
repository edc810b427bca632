"""Routes of the web pages. Each returns a template; the page's module fetches the data."""

from __future__ import annotations

from flask import redirect, render_template, url_for

from api.web import bp


@bp.get("/")
def home():
    return redirect(url_for("web.batches"))


@bp.get("/signin")
def signin():
    return render_template("web/signin.html", page="signin")


@bp.get("/submit")
def submit():
    return render_template("web/submit.html", page="submit")


@bp.get("/batches")
def batches():
    return render_template("web/batches.html", page="batches")


@bp.get("/batches/<batch_id>")
def batch(batch_id: str):
    return render_template("web/batch.html", page="batch", batch_id=batch_id)


@bp.get("/slides/<slide_id>")
def slide(slide_id: str):
    return render_template("web/slide.html", page="slide", slide_id=slide_id)
