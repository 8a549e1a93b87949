"""From nothing (or the user's manifests and models) to the study's tables, figures and report.

:mod:`~cka_probe.pipeline.runner` is a generic resumable stage runner that
records what each output was made from and redoes the outputs whose recipe
changed;
:mod:`~cka_probe.pipeline.study_plan` is the study's plan on top of it (the
stages of ``cka-probe reproduce``).
"""

from cka_probe.pipeline.runner import Stage, run_stage, run_stages
from cka_probe.pipeline.study_plan import FLOOR, MODELS, SCALES, Scale, plan, reproduce

__all__ = ["FLOOR", "MODELS", "SCALES", "Scale", "Stage", "plan", "reproduce", "run_stage", "run_stages"]
