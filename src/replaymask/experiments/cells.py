"""Runs grouped into the cells of a table: one (method and GMS variant, dataset, buffer
size), one value per seed. Shared by the report's tables and its plots."""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from functools import cache

from ..config import resolve
from ..core.methods import declarations
from ..errors import ConfigError


def method_label(config: dict) -> str:
    """'DER++', 'DER++ + GMS (m=-inf)', 'ER + GMS (m=0.0, buffer masked)', and with
    hyper-parameters other than the method's best arguments for the benchmark and buffer
    size, those: 'ER [lr=0.01] + GMS (m=-inf)'. Runs that differ in them are never
    pooled in one cell."""
    method = declarations().get(config["model"])
    label = method.label if method is not None else config["model"]
    changed = _changed_hyperparameters(config)
    if changed:
        label += " [" + ", ".join(f"{name}={value}" for name, value in changed) + "]"
    if config.get("gms"):
        options = [f"m={config.get('gms_mask_value', '-inf')}"]
        if config.get("gms_on_buffer"):
            options.append("buffer masked")
        label += f" + GMS ({', '.join(options)})"
    return label


def _changed_hyperparameters(config: dict) -> list[tuple[str, object]]:
    """The tunable settings (lr, replay batch, the method's own) whose stored value is not
    the one the method's best-args row gives this benchmark and buffer size."""
    defaults = _best_arguments(config["model"], config["dataset"], config["buffer_size"])
    return [(name, config[name]) for name, value in defaults.items()
            if name in config and config[name] != value]


@cache
def _best_arguments(model: str, dataset: str, buffer_size: int) -> dict:
    try:
        default = resolve(model=model, dataset=dataset, buffer_size=buffer_size)
    except (ConfigError, KeyError):  # no best arguments, or a method no longer declared
        return {}
    return {"lr": default.lr, "minibatch_size": default.minibatch_size,
            **default.method_settings}


def mask_order(label: str) -> float:
    """GMS variants in order of m: -inf, the numbers, then detach."""
    found = re.search(r"m=([^,)]+)", label)
    if found is None:
        return -math.inf
    try:
        return float(found.group(1))
    except ValueError:  # detach
        return math.inf


def split_label(label: str) -> tuple[str, str]:
    """A cell label's two parts: the method with its arguments, and the GMS variant
    ('' without GMS): 'ER [lr=0.01] + GMS (m=-inf)' -> ('ER [lr=0.01]', ' (m=-inf)')."""
    plain, _, variant = label.partition(" + GMS")
    return plain, variant


def base_label(label: str) -> str:
    """The method's name in a cell label: 'ER [lr=0.01] + GMS (m=-inf)' -> 'ER'."""
    return split_label(label)[0].split(" [")[0]


@dataclass
class Cell:
    """The runs of one (method label, dataset, buffer size): one value per finished run,
    and how many runs of the cell failed (diverged) instead."""

    label: str
    dataset: str
    buffer_size: int
    results: list[dict]
    failed: int = 0

    @property
    def attempted(self) -> int:
        return len(self.results) + self.failed

    def values(self, setting: str) -> list[float]:
        return [r["metrics"][setting]["average_accuracy"] for r in self.results]

    def mean_matrix(self, setting: str) -> list[list[float]]:
        matrices = [r["accuracy_matrix"][setting] for r in self.results]
        return [[statistics.fmean(m[i][j] for m in matrices) for j in range(len(row))]
                for i, row in enumerate(matrices[0])]


def group_runs(results: list[dict], failed: list[dict] = ()) -> list[Cell]:
    """Group finished runs' results (``result.json`` dicts) and the configurations of
    failed runs into table cells."""
    cells: dict[tuple, Cell] = {}

    def cell_of(config):
        key = (method_label(config), config["dataset"], config["buffer_size"])
        return cells.setdefault(key, Cell(*key, results=[]))
    for result in results:
        cell_of(result["config"]).results.append(result)
    for config in failed:
        cell_of(config).failed += 1
    return list(cells.values())


def row_order(cells: list[Cell]) -> list[str]:
    """The labels of ``cells`` in table order: methods in their declared order, each
    before its GMS variants."""
    methods = [method.label for method in declarations().values()]

    def key(label: str):
        base = base_label(label)
        return (methods.index(base) if base in methods else len(methods),
                split_label(label)[0], " + GMS" in label, mask_order(label), label)
    return sorted({c.label for c in cells}, key=key)
