"""The embedded broker: a worker polling while a message is being written never sees it
half-written (kombu's own filesystem transport lets it, and the worker then stops)."""

from __future__ import annotations

import json

import pytest
from kombu import Connection
from kombu.transport import filesystem

from bloodcount import folder_broker
from bloodcount.queue import FOLDER_TRANSPORT, TaskQueue, celery_config
from tests.servicekit import embedded_settings

QUEUE = "slides"
PAYLOAD = {"body": "x" * 1000, "properties": {}}


def _channel(tmp_path, transport):
    folder = tmp_path / "queue"
    folder.mkdir(exist_ok=True)
    options = {"data_folder_in": str(folder), "data_folder_out": str(folder)}
    connection = Connection("filesystem://", transport=transport, transport_options=options)
    return connection, connection.default_channel


def test_kombus_own_transport_hands_a_poller_a_message_still_being_written(tmp_path, monkeypatch):
    # Why this module exists: the poll lands between kombu's open() and its write().
    connection, channel = _channel(tmp_path, filesystem.Transport)
    seen = []
    monkeypatch.setattr(filesystem, "lock", lambda f, flags: seen.append(_poll(channel)))
    channel._put(QUEUE, PAYLOAD)
    assert seen == ["broken"]
    connection.release()


def test_a_poll_during_our_write_sees_nothing_and_the_message_arrives_whole(tmp_path, monkeypatch):
    connection, channel = _channel(tmp_path, folder_broker.Transport)
    seen = []
    real_replace = folder_broker.os.replace

    def replace_after_a_poll(src, dst):
        seen.append(_poll(channel))  # the whole message is written, not yet in place
        real_replace(src, dst)

    monkeypatch.setattr(folder_broker.os, "replace", replace_after_a_poll)
    channel._put(QUEUE, PAYLOAD)
    assert seen == ["empty"]
    assert channel._get(QUEUE) == PAYLOAD
    assert list((tmp_path / "queue").iterdir()) == []  # no partial file left behind
    connection.release()


def _poll(channel) -> str:
    try:
        channel._get(QUEUE)
    except filesystem.Empty:
        return "empty"
    except json.JSONDecodeError:
        return "broken"  # what stops a Celery worker with "Unrecoverable error"
    return "message"


def test_the_service_uses_it_for_the_folder_broker_only(tmp_path):
    settings = embedded_settings(tmp_path)
    assert celery_config(settings)["broker_transport"] == FOLDER_TRANSPORT
    # What the API's producer actually connects with (the worker shares the config).
    producer = TaskQueue(settings).app.connection_for_write()
    assert producer.get_transport_cls() is folder_broker.Transport
    redis = celery_config(embedded_settings(tmp_path, broker_url="redis://127.0.0.1:6379/0"))
    assert "broker_transport" not in redis


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path):
    yield
    assert not list(tmp_path.glob("queue/.*.part"))
