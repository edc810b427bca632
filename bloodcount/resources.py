"""The long-lived things a process needs, made once from the settings: engine, sessions, store."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bloodcount.config import Settings, load_settings
from bloodcount.db.engine import make_engine, make_session_factory
from bloodcount.storage import ObjectStore, store_from_settings


@dataclass
class Resources:
    """Lazily opened, so a command that needs only the database never touches storage."""

    settings: Settings

    @classmethod
    def from_env(cls) -> Resources:
        return cls(load_settings())

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return make_session_factory(self.engine)

    @cached_property
    def store(self) -> ObjectStore:
        return store_from_settings(self.settings)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
