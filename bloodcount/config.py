"""Settings, read once from ``BLOODCOUNT_*`` environment variables.

Every setting has an embedded default that needs no server (SQLite, a folder store, a
filesystem broker under ``./var``), so ``make run`` works on a bare machine. Values are
checked when :func:`load_settings` runs, never at import time, and a bad value raises
:class:`SettingsError` naming the variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

PREFIX = "BLOODCOUNT_"
PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = PACKAGE_DIR / "models" / "default"
DEFAULT_DETECTOR_DIR = PACKAGE_DIR / "models" / "detector"


class SettingsError(ValueError):
    """A ``BLOODCOUNT_*`` variable holds a value that cannot be used."""


def _setting(default: Any, doc: str, parse: Callable[[str], Any] | None = None) -> Any:
    return field(default=default, metadata={"doc": doc, "parse": parse})


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive whole number")
    return value


def _non_negative_float(raw: str) -> float:
    value = float(raw)
    if value < 0:
        raise ValueError("must be zero or more")
    return value


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("must be one of 1/0, true/false, yes/no, on/off")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _database_url(raw: str) -> str:
    scheme = urlparse(raw).scheme
    if not scheme.startswith(("sqlite", "postgresql")):
        raise ValueError("must be a sqlite:/// or postgresql+psycopg:// URL")
    if scheme in {"postgresql", "postgres"}:
        # SQLAlchemy's bare "postgresql" means psycopg2, which we do not ship.
        raw = "postgresql+psycopg" + raw[len(scheme) :]
    return raw


def _storage_url(raw: str) -> str:
    parsed = urlparse(raw)
    if parsed.scheme == "file" or parsed.scheme == "":
        return raw
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError("an s3:// URL must name a bucket, e.g. s3://bloodcount/slides")
        return raw
    raise ValueError("must be file://PATH or s3://BUCKET[/PREFIX]")


def _broker_url(raw: str) -> str:
    if "://" not in raw:
        raise ValueError("must be a URL such as redis://127.0.0.1:6379/0 or filesystem://")
    return raw


def _analysis_method(raw: str) -> str:
    method = raw.strip().lower()
    if method not in {"dense", "classical"}:
        raise ValueError("must be dense or classical")
    return method


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


@dataclass(frozen=True)
class Settings:
    """All runtime configuration. Field ``x`` is read from ``BLOODCOUNT_X``."""

    database_url: str = _setting(
        "sqlite:///var/bloodcount.db", "SQLAlchemy URL of the results database.", _database_url
    )
    broker_url: str = _setting(
        "filesystem://",
        "Celery broker URL. `filesystem://` needs no server (embedded default).",
        _broker_url,
    )
    broker_folder: Path = _setting(
        Path("var/broker"), "Message folder for the `filesystem://` broker.", Path
    )
    task_always_eager: bool = _setting(
        False, "Run tasks inside the submitting process (tests, one-shot scripts).", _bool
    )
    storage_url: str = _setting(
        "file://var/objects", "Object store: `file://PATH` or `s3://BUCKET/PREFIX`.", _storage_url
    )
    s3_endpoint_url: str | None = _setting(
        None, "S3 endpoint (MinIO, moto); unset means AWS.", lambda raw: raw or None
    )
    s3_region: str = _setting("us-east-1", "S3 region.")
    presign_expiry_seconds: int = _setting(
        3600, "Lifetime of presigned upload/download URLs.", _positive_int
    )
    model_path: Path = _setting(
        DEFAULT_MODEL_DIR, "Folder holding the classifier (`model.tflite` + `card.json`).", Path
    )
    detector_path: Path = _setting(
        DEFAULT_DETECTOR_DIR,
        "Folder holding the dense cell detector (`model.tflite` + `card.json`).",
        Path,
    )
    analysis_method: str = _setting(
        "dense",
        "How cells are found: `dense` (learned detector) or `classical` (OpenCV + classifier).",
        _analysis_method,
    )
    max_upload_bytes: int = _setting(
        512 * 1024 * 1024,
        "Largest accepted request body, and largest file `bloodcount analyze` reads, in bytes.",
        _positive_int,
    )
    max_files_per_batch: int = _setting(1000, "Most slides in one batch.", _positive_int)
    max_image_pixels: int = _setting(
        100_000_000, "Largest accepted image, in pixels (decompression-bomb guard).", _positive_int
    )
    tile_size: int = _setting(
        2048, "Images larger than this (either side) are analysed in tiles.", _positive_int
    )
    review_threshold: float = _setting(
        0.80,
        "Cells classified with less confidence than this are flagged for review.",
        _non_negative_float,
    )
    task_max_retries: int = _setting(
        5, "Retries of a slide task after a transient error.", _positive_int
    )
    # Under stuck_after_seconds: the reconciler would re-send a slide still being analysed.
    task_time_limit: int = _setting(
        300,
        "Seconds one slide's analysis may take; then the slide fails, saying so, and a worker "
        "process that cannot be interrupted is replaced. Keep it below "
        "`BLOODCOUNT_STUCK_AFTER_SECONDS`.",
        _positive_int,
    )
    orphan_after_seconds: int = _setting(
        3600,
        "Images left by an interrupted upload (no batch row) are deleted after this age.",
        _positive_int,
    )
    stuck_after_seconds: int = _setting(
        600, "A slide queued or processing longer than this is re-enqueued.", _positive_int
    )
    # 0.25 s, not 1 s: even 64 pollers flat out hit the cache >99% of the time, and a
    # finished batch is seen "done" at most this late (1 s cost the 500-slide bench ~10%).
    status_cache_seconds: float = _setting(
        0.25,
        "How long an API process reuses a batch's status for polling (0 turns it off).",
        _non_negative_float,
    )
    rate_limit_per_minute: int = _setting(
        600, "Requests per API key per minute (0 turns the limit off).", lambda r: int(r)
    )
    cors_origins: tuple[str, ...] = _setting(
        (), "Origins allowed by CORS, comma-separated; empty turns CORS off.", _csv
    )
    api_key_pepper: str = _setting(
        "", "Secret mixed into API-key hashes; set it in production.", str
    )
    log_level: str = _setting("INFO", "Log level.", _log_level)
    data_dir: Path = _setting(
        Path("../shared/data"), "Annotated smears for training and evaluation.", Path
    )
    weights: Path = _setting(
        Path(
            "../shared/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"
        ),
        "ImageNet MobileNetV2 weights that training starts from.",
        Path,
    )

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def env_name(field_name: str) -> str:
    return PREFIX + field_name.upper()


def setting_docs() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: feeds README and checks."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default
        if isinstance(default, tuple):
            default = ",".join(default)
        elif isinstance(default, Path) and default.is_absolute():
            default = default.relative_to(PACKAGE_DIR.parent)  # the packaged model
        rows.append((env_name(f.name), "" if default is None else str(default), f.metadata["doc"]))
    return rows


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build :class:`Settings` from the environment; raise SettingsError on a bad value.

    ``BLOODCOUNT_DATA`` is accepted as a short alias of ``BLOODCOUNT_DATA_DIR``.
    """
    environ = os.environ if environ is None else environ
    known = {env_name(f.name) for f in dataclasses.fields(Settings)} | {PREFIX + "DATA"}
    # Variables used only by the test suite, not settings of the service.
    known |= {PREFIX + "REQUIRE_SERVICES", PREFIX + "REQUIRE_DATA", PREFIX + "TEST_DATABASE_URL"}
    unknown = sorted(k for k in environ if k.startswith(PREFIX) and k not in known)
    if unknown:
        raise SettingsError(
            f"unknown setting {unknown[0]}: check the spelling against the README's table"
        )

    values: dict[str, Any] = {}
    for f in dataclasses.fields(Settings):
        name = env_name(f.name)
        raw = environ.get(name)
        if raw is None and f.name == "data_dir":
            raw = environ.get(PREFIX + "DATA")
        if raw is None:
            continue
        parse = f.metadata["parse"] or str
        try:
            values[f.name] = parse(raw)
        except ValueError as exc:
            reason = str(exc) if "invalid literal" not in str(exc) else "is not a number"
            raise SettingsError(f"{name}={raw!r}: {reason}") from None
    values.update(overrides)
    return Settings(**values)
