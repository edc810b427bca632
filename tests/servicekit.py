"""Shared helpers of the service tests: slides, a stand-in classifier, an app with a lab.

The stand-in classifier lets the API and worker tests run the real Analyzer pipeline
(decode, OpenCV proposals, crops, NMS, overlay) while the shipped model is absent; the
integration tests build a real, tiny LiteRT model instead (:func:`tiny_model`).
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import zipfile
from pathlib import Path

import numpy as np

from bloodcount.config import load_settings
from bloodcount.db import migrate
from bloodcount.db.engine import make_engine, make_session_factory, session_scope
from bloodcount.labs import create_lab

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("RBC", "WBC", "Platelets", "background")


class StandInClassifier:
    """Classifies a crop by the colour of its middle: purple is WBC, pink-grey is RBC."""

    classes = CLASSES
    input_size = 32
    info = {"name": "stand-in", "version": "test", "sha256": "1" * 64}

    def predict(self, crops: np.ndarray) -> np.ndarray:
        if len(crops) == 0:  # a slide without proposals, as the real classifier allows
            return np.zeros((0, len(CLASSES)), np.float32)
        middle = crops[:, 12:20, 12:20].reshape(len(crops), -1, 3).astype(np.float32).mean(axis=1)
        purple = (middle[:, 2] - middle[:, 1]) / 255.0
        out = np.full((len(crops), 4), 0.05, np.float32)
        out[:, 0] = np.where(purple < 0.15, 0.85, 0.05)
        out[:, 1] = np.where(purple >= 0.15, 0.85, 0.05)
        return out


def smear_bytes(seed: int = 0, fmt: str = ".jpg", width: int = 640, height: int = 480) -> bytes:
    """A synthetic smear encoded as an image file."""
    import cv2

    from tests.synthetic import make_smear

    image = make_smear(seed=seed, width=width, height=height).image
    ok, data = cv2.imencode(fmt, image[:, :, ::-1])
    assert ok
    return data.tobytes()


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def prepare_database(url: str, lab_names=("Lab A", "Lab B")) -> dict[str, str]:
    """Migrate ``url`` and create labs; returns {lab name: API key}."""
    migrate.upgrade(url)
    engine = make_engine(url)
    keys = {}
    with session_scope(make_session_factory(engine)) as session:
        for name in lab_names:
            keys[name] = create_lab(session, name).api_key
    engine.dispose()
    return keys


def embedded_settings(tmp_path: Path, **overrides):
    """Settings on SQLite and a folder store under ``tmp_path``, tasks run in-process."""
    values = {
        "database_url": f"sqlite:///{tmp_path}/bloodcount.db",
        "storage_url": f"file://{tmp_path}/objects",
        "broker_folder": tmp_path / "broker",
        "task_always_eager": True,
    }
    values.update(overrides)
    return load_settings({}, **values)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_model(folder: Path) -> Path:
    """A real LiteRT classifier, tiny and deterministic, with its card: crop colour in,
    (RBC, WBC, Platelets, background) out. Built with TensorFlow once per test session."""
    model_path, card_path = folder / "model.tflite", folder / "card.json"
    if not model_path.exists():
        import tensorflow as tf

        folder.mkdir(parents=True, exist_ok=True)
        size = 32
        inputs = tf.keras.Input((size, size, 3), dtype=tf.float32)
        x = tf.keras.layers.Rescaling(1 / 255.0)(inputs)
        x = tf.keras.layers.GlobalAveragePooling2D()(x)
        dense = tf.keras.layers.Dense(4, activation="softmax")
        outputs = dense(x)
        model = tf.keras.Model(inputs, outputs)
        # Fixed weights: a crop whose blue clearly exceeds its green (a stained nucleus)
        # is a white cell, any other a red cell; platelets and background never win.
        dense.set_weights(
            [
                np.array([[0, 0, 0, 0], [0, -12, 0, 0], [0, 12, 0, 0]], np.float32),
                np.array([2.0, -1.0, -5.0, -3.0], np.float32),
            ]
        )
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        model_path.write_bytes(converter.convert())
        digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
        card_path.write_text(
            json.dumps(
                {
                    "name": "tiny-test-model",
                    "version": "0.0.1",
                    "sha256": digest,
                    "classes": list(CLASSES),
                    "input_size": size,
                }
            )
        )
    return folder


class ApiEnv:
    """A Flask test client on embedded settings, with two labs' keys."""

    def __init__(self, tmp_path: Path, analyzer=None, **overrides):
        from api import create_app
        from api.auth import clear_cache
        from bloodcount.analysis import Analyzer

        clear_cache()
        self.settings = embedded_settings(tmp_path, **overrides)
        self.keys = prepare_database(self.settings.database_url)
        self.analyzer = analyzer or Analyzer(self.settings, classifier=StandInClassifier())
        self.app = create_app(
            {"SETTINGS": self.settings, "ANALYZER": self.analyzer, "TESTING": True}
        )
        self.client = self.app.test_client()
        self.resources = self.app.extensions["bloodcount"].resources

    def headers(self, lab: str = "Lab A", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[lab]}", **extra}

    def get(self, path: str, lab: str = "Lab A", **kwargs):
        return self.client.get(
            path, headers=self.headers(lab, **kwargs.pop("headers", {})), **kwargs
        )

    def post(self, path: str, lab: str = "Lab A", **kwargs):
        return self.client.post(
            path, headers=self.headers(lab, **kwargs.pop("headers", {})), **kwargs
        )

    def delete(self, path: str, lab: str = "Lab A", **kwargs):
        return self.client.delete(
            path, headers=self.headers(lab, **kwargs.pop("headers", {})), **kwargs
        )

    def submit(
        self, files: dict[str, bytes], lab: str = "Lab A", reference: str | None = None, **headers
    ):
        data = {"files": [(io.BytesIO(content), name) for name, content in files.items()]}
        if reference is not None:
            data["reference"] = reference
        return self.post(
            "/api/v1/batches",
            lab=lab,
            data=data,
            headers=headers,
            content_type="multipart/form-data",
        )

    def close(self) -> None:
        self.resources.close()


def open_api_env(tmp_path: Path, **overrides):
    """Yield an ApiEnv and close it after: the body of a test module's fixture."""
    env = ApiEnv(tmp_path, **overrides)
    try:
        yield env
    finally:
        env.close()
