"""Structured multi-task variants of the dual-output model (``--variant``).

:mod:`~cka_probe.asr.variants.spec` parses a variant name and its settings;
each encoder of a variant has its module (split, shared–private, sparse
sharing) with the parts only it uses (gradient reversal, the task
discriminator, the orthogonality loss, hard-concrete gates).
"""
