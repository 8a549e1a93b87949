"""Manifests and the synthetic L2 corpus.

- :mod:`cka_probe.data.manifest`: read and write JSON Lines manifests.
- :mod:`cka_probe.data.synth`: ``synthesize(lang=..., n=..., out_dir=...)``, the
  corpus of ``cka-probe synth`` (see ``docs/corpus.md``).
"""

from cka_probe.data.manifest import read_manifest, write_manifest

__all__ = ["read_manifest", "write_manifest"]
