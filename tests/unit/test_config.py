from pathlib import Path

import pytest

from bloodcount.config import SettingsError, load_settings, setting_docs


def test_defaults_need_no_server():
    settings = load_settings({})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.storage_url.startswith("file://")
    assert settings.broker_url == "filesystem://"
    assert settings.is_sqlite


def test_values_are_parsed_and_typed():
    settings = load_settings(
        {
            "BLOODCOUNT_MAX_UPLOAD_BYTES": "1024",
            "BLOODCOUNT_TASK_ALWAYS_EAGER": "yes",
            "BLOODCOUNT_CORS_ORIGINS": "https://a.example, https://b.example",
            "BLOODCOUNT_MODEL_PATH": "/models/x",
            "BLOODCOUNT_DATABASE_URL": "postgresql://u@db/bc",
        }
    )
    assert settings.max_upload_bytes == 1024
    assert settings.task_always_eager is True
    assert settings.cors_origins == ("https://a.example", "https://b.example")
    assert settings.model_path == Path("/models/x")
    # A bare postgresql:// URL is pointed at psycopg 3, the driver we ship.
    assert settings.database_url == "postgresql+psycopg://u@db/bc"


def test_data_alias():
    assert load_settings({"BLOODCOUNT_DATA": "/d"}).data_dir == Path("/d")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BLOODCOUNT_MAX_UPLOAD_BYTES", "lots", "is not a number"),
        ("BLOODCOUNT_MAX_UPLOAD_BYTES", "-5", "positive"),
        ("BLOODCOUNT_TASK_ALWAYS_EAGER", "maybe", "true/false"),
        ("BLOODCOUNT_DATABASE_URL", "mysql://x/y", "sqlite"),
        ("BLOODCOUNT_STORAGE_URL", "ftp://host/x", "s3://"),
        ("BLOODCOUNT_STORAGE_URL", "s3://", "bucket"),
        ("BLOODCOUNT_BROKER_URL", "localhost", "URL"),
        ("BLOODCOUNT_LOG_LEVEL", "LOUD", "DEBUG"),
        ("BLOODCOUNT_REVIEW_THRESHOLD", "-0.1", "zero or more"),
    ],
)
def test_bad_values_name_the_variable(variable, value, message):
    with pytest.raises(SettingsError) as info:
        load_settings({variable: value})
    assert variable in str(info.value)
    assert message in str(info.value)


def test_misspelt_variable_is_refused():
    with pytest.raises(SettingsError, match="BLOODCOUNT_DATABSE_URL"):
        load_settings({"BLOODCOUNT_DATABSE_URL": "sqlite://"})


def test_every_setting_is_documented():
    docs = setting_docs()
    assert len(docs) >= 20
    for variable, _default, text in docs:
        assert variable.startswith("BLOODCOUNT_")
        assert text.endswith((".", ")")), variable


def test_import_never_reads_the_environment():
    import os
    import subprocess
    import sys

    env = dict(os.environ, BLOODCOUNT_MAX_UPLOAD_BYTES="not a number")
    # Importing must not raise: values are checked when load_settings() runs.
    subprocess.run(
        [sys.executable, "-c", "import bloodcount.config, bloodcount.cli"], env=env, check=True
    )
