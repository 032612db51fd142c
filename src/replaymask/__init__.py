"""replaymask: replay-based continual learning with the General Masked Softmax (GMS).

The loss on its own: ``gms_cross_entropy``, ``live_classes``, ``class_to_task_layout``
(:mod:`replaymask.core.gms`). Runs from Python: ``run``, ``sweep``, ``load_runs``,
``runs_dataframe``, ``methods`` (:mod:`replaymask.api`); ``resolve`` makes a run's
configuration (:mod:`replaymask.config`). Your own problem: ``benchmark_from_tensors``,
``benchmark_from_datasets``, ``benchmark_from_folder`` make a ``Benchmark``;
``register_benchmark`` and ``register_backbone`` make names for the command line and
sweep files.

Names are loaded when first used, so ``import replaymask`` does not import torch.
"""

from __future__ import annotations

import importlib

from .version import __version__

_EXPORTS = {
    "gms_cross_entropy": "core.gms", "live_classes": "core.gms",
    "class_to_task_layout": "core.gms", "gms_masked_logits": "core.gms",
    "run": "api", "run_config": "api", "sweep": "api", "plan_sweep": "api",
    "load_runs": "api", "runs_dataframe": "api", "methods": "api", "RunRecord": "api",
    "resolve": "config", "RunConfig": "core.run_config", "RunResult": "core.results",
    "ConfigError": "errors",
    "Benchmark": "data.benchmarks", "load_benchmark": "data.benchmarks",
    "benchmark_from_tensors": "data.from_objects", "benchmark_from_datasets": "data.from_objects",
    "benchmark_from_folder": "data.folders", "register_benchmark": "data.registry",
    "register_backbone": "core.networks", "execute": "experiments.execution",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'replaymask' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
