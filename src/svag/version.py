"""The version of svag: its one owner (``pyproject.toml`` reads it, ``svag.__version__`` re-exports it)."""

__version__ = "0.3.0.dev0"  # the layered folders of 0.3.0 (issue 22); the aliases of moved paths go in 0.4.0
