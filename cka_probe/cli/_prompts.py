"""``--prompt TASK=PROMPT`` / ``--prompts FILE.json``: the task prompts of a Whisper whose one decoder selects
its output by a prompt, as ``extract``, ``evaluate`` and ``reproduce`` take them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cka_probe.errors import CKAProbeError


def add_prompt_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The mutually exclusive ``--prompt`` (repeated) and ``--prompts`` options; ``what`` says what a prompt
    does there (e.g. "teacher-force TASK after PROMPT")."""
    given = parser.add_mutually_exclusive_group()
    given.add_argument(
        "--prompt",
        action="append",
        type=task_prompt,
        metavar="TASK=PROMPT",
        help=f"{what} (a task token such as '<|surface|>' or a text), for a Whisper whose one decoder "
        "selects its output by a prompt; once per task",
    )
    given.add_argument(
        "--prompts", metavar="FILE.json", help='task prompts in JSON: {"surface": "...", "meaning": "..."}'
    )


def task_prompt(text: str) -> tuple[str, str]:
    """``TASK=PROMPT`` -> ``(task, prompt)``."""
    task, sep, prompt = text.partition("=")
    if not sep or not task:
        raise argparse.ArgumentTypeError(f"{text!r} is not TASK=PROMPT (e.g. surface='<|surface|>')")
    return task, prompt


def prompts_of(pairs: list[tuple[str, str]] | None, path: str | None) -> dict[str, str] | None:
    """The task prompts of ``--prompt`` pairs (each task once) or of the ``--prompts`` JSON file."""
    if path is not None:
        return read_prompts(Path(path))
    if not pairs:
        return None
    prompts: dict[str, str] = {}
    for task, prompt in pairs:
        if task in prompts:
            raise CKAProbeError(f"--prompt: task {task} is given twice")
        prompts[task] = prompt
    return prompts


def read_prompts(path: Path) -> dict[str, str]:
    """A ``--prompts`` file: one JSON object of task -> prompt string."""
    try:
        prompts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CKAProbeError(f"{path}: cannot read the prompts ({err})") from None
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise CKAProbeError(f'{path}: not a JSON object of task -> prompt ({{"surface": "<|surface|>"}})')
    return prompts
