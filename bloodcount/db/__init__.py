"""The results database: SQLAlchemy 2 models, engine and sessions, schema migrations."""

from bloodcount.db.engine import make_engine, make_session_factory, session_scope
from bloodcount.db.models import Analysis, Base, Batch, Cell, Lab, Slide

__all__ = [
    "Analysis",
    "Base",
    "Batch",
    "Cell",
    "Lab",
    "Slide",
    "make_engine",
    "make_session_factory",
    "session_scope",
]
