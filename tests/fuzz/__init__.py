"""Fuzzing of every input format and option against the README's promise for expected mistakes.

``seeds`` builds clean inputs from scratch, ``mutate`` breaks them (seeded),
``cases`` says which file each format mutates and which command consumes it,
``oracle`` runs that command in a fork-server child and judges the outcome.
"""
