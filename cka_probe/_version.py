"""The package version, in one place: ``cka_probe.__version__``, the store's ``cka_probe_version``
attribute and the distribution's version (``pyproject.toml`` reads it from here).
"""

__version__ = "0.1.0"
