"""docker-compose.yml cannot run here (no Docker engine), so check its wiring by reading it."""

from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from bloodcount.config import env_name, load_settings, setting_docs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _bloodcount_services(compose):
    return {
        name: svc
        for name, svc in compose["services"].items()
        if svc.get("image") == "bloodcount:latest"
    }


def test_roles_and_infrastructure_present(compose):
    assert {"api", "worker", "beat", "redis", "postgres", "minio", "flower"} <= set(
        compose["services"]
    )
    commands = {name: svc["command"] for name, svc in _bloodcount_services(compose).items()}
    assert commands["api"][:2] == ["bloodcount", "serve"]
    assert commands["worker"][:2] == ["bloodcount", "worker"]
    assert commands["beat"][:2] == ["bloodcount", "beat"]
    assert commands["migrate"] == ["bloodcount", "db", "upgrade"]


def test_long_running_services_have_healthchecks(compose):
    for name in ["api", "worker", "redis", "postgres", "minio"]:
        assert "healthcheck" in compose["services"][name], name


def test_every_bloodcount_variable_is_a_real_setting(compose):
    known = {variable for variable, _, _ in setting_docs()}
    for name, svc in _bloodcount_services(compose).items():
        for variable in svc["environment"]:
            if variable.startswith("BLOODCOUNT_"):
                assert variable in known, f"{name} sets unknown {variable}"


def test_settings_point_at_services_in_the_file(compose):
    env = compose["services"]["api"]["environment"]
    values = {k: v for k, v in env.items() if k.startswith("BLOODCOUNT_") and "${" not in str(v)}
    settings = load_settings(values)  # parses: every value is valid for its setting
    services = set(compose["services"])
    assert urlparse(settings.database_url).hostname in services
    assert urlparse(settings.broker_url).hostname in services
    assert settings.storage_url.startswith("s3://")
    assert urlparse(settings.s3_endpoint_url).hostname in services
    # The bucket the store uses is the one minio-init creates.
    bucket = urlparse(settings.storage_url).netloc
    assert f"local/{bucket}" in " ".join(compose["services"]["minio-init"]["command"])


def test_all_roles_share_one_environment(compose):
    envs = [svc["environment"] for svc in _bloodcount_services(compose).values()]
    assert all(env == envs[0] for env in envs)
    assert env_name("database_url") in envs[0]


def test_dockerfile_copies_every_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in ["bloodcount", "api", "worker", "training", "migrations"]:
        assert f"COPY {folder} " in dockerfile, folder
