"""The version of svag: its one owner (``pyproject.toml`` reads it, ``svag.__version__`` re-exports it)."""

__version__ = "0.2.0"
