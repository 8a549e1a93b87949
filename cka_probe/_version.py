"""The package version (one place, read by ``pyproject.toml``-free code such as the store writer)."""

__version__ = "0.1.0"
