"""``--prompt [ROLE:]TASK=PROMPT`` / ``--prompts FILE.json``: the task prompts of a Whisper whose one decoder
selects its output by a prompt, as ``extract``, ``evaluate`` and ``reproduce`` take them.

``extract`` and ``evaluate`` read one model: its prompts are ``{task: prompt}``. ``reproduce`` may bring
several, so a prompt may be scoped to the models of one role (``do:surface=...``) or one replicate
(``sso#1:surface=...``); its prompts are ``{task: prompt, scope: {task: prompt}}``
(:func:`cka_probe.pipeline.study_plan.prompts_of_model`), and a ``--prompts`` file has the same shape.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cka_probe.errors import CKAProbeError

Prompts = dict[str, "str | dict[str, str]"]
"""Task -> prompt for every model, and scope (``ROLE`` or ``ROLE#K``) -> task -> prompt."""


def add_prompt_arguments(parser: argparse.ArgumentParser, what: str, *, scoped: bool = False) -> None:
    """The mutually exclusive ``--prompt`` (repeated) and ``--prompts`` options; ``what`` says what a prompt
    does there (e.g. "teacher-force TASK after PROMPT"); ``scoped`` lets a prompt name the role (or
    replicate) of the brought models it is for."""
    given = parser.add_mutually_exclusive_group()
    scope = "[ROLE[#K]:]" if scoped else ""
    given.add_argument(
        "--prompt",
        action="append",
        type=scoped_prompt if scoped else task_prompt,
        metavar=f"{scope}TASK=PROMPT",
        help=f"{what} (a task token such as '<|surface|>' or a text), for a Whisper whose one decoder "
        "selects its output by a prompt; once per task"
        + ("; ROLE: only for the models brought as ROLE (do:surface=...)" if scoped else ""),
    )
    shape = ', or {"do": {"surface": "..."}} per role' if scoped else ""
    given.add_argument(
        "--prompts",
        metavar="FILE.json",
        help=f'task prompts in JSON: {{"surface": "...", "meaning": "..."}}{shape}',
    )


def task_prompt(text: str) -> tuple[str, str]:
    """``TASK=PROMPT`` -> ``(task, prompt)``."""
    task, sep, prompt = text.partition("=")
    if not sep or not task:
        raise argparse.ArgumentTypeError(f"{text!r} is not TASK=PROMPT (e.g. surface='<|surface|>')")
    return task, prompt


def scoped_prompt(text: str) -> tuple[str, str]:
    """``[SCOPE:]TASK=PROMPT`` -> ``("SCOPE:TASK" or "TASK", prompt)``: the scope stays in the key, split by
    :func:`prompts_of`."""
    key, prompt = task_prompt(text)
    scope, colon, task = key.rpartition(":")
    if colon and not (scope and task):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not [ROLE:]TASK=PROMPT (e.g. do:surface='<|surface|>')"
        )
    return key, prompt


def prompts_of(
    pairs: list[tuple[str, str]] | None, path: str | None, *, scoped: bool = False
) -> Prompts | None:
    """The prompts of ``--prompt`` pairs (each task of each scope once) or of the ``--prompts`` JSON file;
    unless ``scoped``, a file's scope is a one-line error (one model's command has no roles)."""
    if path is not None:
        prompts = read_prompts(Path(path))
        nested = [key for key, value in prompts.items() if not isinstance(value, str)]
        if nested and not scoped:
            raise CKAProbeError(
                f"{path}: {nested[0]} is a scope of prompts; only reproduce takes them per role"
            )
        return prompts
    if not pairs:
        return None
    prompts: Prompts = {}
    for key, prompt in pairs:
        scope, _, task = key.rpartition(":")
        where = prompts.setdefault(scope, {}) if scope else prompts
        if task in where:
            raise CKAProbeError(f"--prompt: task {key} is given twice")
        where[task] = prompt
    return prompts


def read_prompts(path: Path) -> Prompts:
    """A ``--prompts`` file: one JSON object of task -> prompt string (and, for ``reproduce``, scope -> such
    an object)."""
    try:
        prompts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CKAProbeError(f"{path}: cannot read the prompts ({err})") from None
    if not isinstance(prompts, dict) or not all(_prompt_or_scope(v) for v in prompts.values()):
        raise CKAProbeError(f'{path}: not a JSON object of task -> prompt ({{"surface": "<|surface|>"}})')
    return prompts


def _prompt_or_scope(value: object) -> bool:
    return isinstance(value, str) or (
        isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    )
