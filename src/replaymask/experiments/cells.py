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


def method_label(config: dict, leave_out: tuple[str, ...] = ()) -> str:
    """'DER++', 'DER++ + GMS (m=-inf)', 'ER + GMS (m=0.0, buffer masked)', and with
    hyper-parameters other than the method's best arguments for the benchmark and buffer
    size, those: 'ER [lr=0.01] + GMS (m=-inf)'. Runs that differ in them are never
    pooled in one cell. ``leave_out``: hyper-parameters not to name (a search's)."""
    method = declarations().get(config["model"])
    label = method.label if method is not None else config["model"]
    changed = [(name, value) for name, value in changed_hyperparameters(config)
               if name not in leave_out]
    if changed:
        label += " [" + ", ".join(f"{name}={value}" for name, value in changed) + "]"
    if config.get("gms"):
        options = [f"m={config.get('gms_mask_value', '-inf')}"]
        if config.get("gms_on_buffer"):
            options.append("buffer masked")
        label += f" + GMS ({', '.join(options)})"
    return label


def changed_hyperparameters(config: dict) -> list[tuple[str, object]]:
    """The network, where it is not the benchmark's default, and the tunable settings (lr,
    replay batch, the method's own) whose stored value is not the one the method's
    best-args row gives this benchmark and buffer size (all of them where the benchmark
    has no best arguments, as a user's own)."""
    network = [("net", network_label(config))] if config.get("backbone") else []
    defaults = None
    if config.get("benchmark_fingerprint") is None:
        defaults = _best_arguments(config["model"], config["dataset"], config["buffer_size"])
    if defaults is None:
        method = declarations().get(config["model"])
        own = [s.name for s in method.settings] if method is not None else []
        replay = ["minibatch_size"] if method is None or method.uses_buffer else []
        return network + [(name, config[name]) for name in ("lr", *replay, *own)
                          if config.get(name) is not None]
    return network + [(name, config[name]) for name, value in defaults.items()
                      if name in config and config[name] != value]


@cache
def _best_arguments(model: str, dataset: str, buffer_size: int) -> dict | None:
    try:
        default = resolve(model=model, dataset=dataset, buffer_size=buffer_size)
    except (ConfigError, KeyError):  # no best arguments, or a method no longer declared
        return None
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


def network_label(config: dict) -> str:
    """A stored configuration's network, where it is not the benchmark's default: its
    name (a class's or factory's without its module), and for any but a built-in one the
    first 8 hex digits of its fingerprint ('SmallCNN@5e6f7a8b')."""
    name = config["backbone"].rpartition(".")[2]
    fingerprint = config.get("backbone_fingerprint")
    return name if fingerprint is None else f"{name}@{fingerprint[:8]}"


def dataset_label(config: dict) -> str:
    """A stored configuration's benchmark: its name, and for a user benchmark the first 8
    hex digits of its content fingerprint ('my-fmnist@1a2b3c4d'), so that two benchmarks
    of one name are never taken for one another."""
    fingerprint = config.get("benchmark_fingerprint")
    return config["dataset"] if fingerprint is None else f"{config['dataset']}@{fingerprint[:8]}"


def benchmark_label(config: dict) -> str:
    """The dataset, and the scenario where it is not the protocol's: 'seq-mnist',
    'seq-mnist (10 tasks)', 'seq-fmnist (order 3)', 'seq-mnist (validation 10%)'. Runs of
    different scenarios are never pooled in one cell (but see :func:`pooled_over_orders`).
    A stored configuration holds ``n_tasks`` only where it is not the benchmark's own."""
    parts = []
    n_tasks = config.get("n_tasks")
    if n_tasks is not None:
        parts.append(f"{n_tasks} tasks")
    if config.get("class_order_seed") is not None:
        parts.append(f"order {config['class_order_seed']}")
    if config.get("validation_fraction"):
        parts.append(f"validation {config['validation_fraction']:.0%}")
    return dataset_label(config) + (f" ({', '.join(parts)})" if parts else "")


def scenario_of(benchmark: str) -> str:
    """The scenario part of a benchmark label: '' for the protocol's, '10 tasks', ..."""
    return benchmark.partition(" (")[2].rstrip(")")


@dataclass
class Cell:
    """The runs of one (method label, benchmark, buffer size): one value per finished run,
    and how many runs of the cell failed (diverged) instead. ``dataset`` is the
    benchmark's label (:func:`benchmark_label`): the dataset and any other scenario."""

    label: str
    dataset: str
    buffer_size: int
    results: list[dict]
    failed: int = 0

    @property
    def scenario(self) -> str:
        return scenario_of(self.dataset)

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
        key = (method_label(config), benchmark_label(config), config["buffer_size"])
        return cells.setdefault(key, Cell(*key, results=[]))
    for result in results:
        cell_of(result["config"]).results.append(result)
    for config in failed:
        cell_of(config).failed += 1
    return list(cells.values())


def pooled_over_orders(cells: list[Cell]) -> list[Cell]:
    """For every (method label, dataset, buffer size) run under two or more class orders
    (the natural one counts), one cell of all its runs, labelled 'seq-mnist (orders
    pooled)'. Its runs still pair on seed and class order."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        if cell.scenario and not cell.scenario.startswith("order "):
            continue  # other task counts and validation runs are not pooled
        groups.setdefault((cell.label, cell.dataset.partition(" (")[0], cell.buffer_size),
                          []).append(cell)
    return [Cell(label, f"{dataset} (orders pooled)", buffer_size,
                 [r for c in members for r in c.results], sum(c.failed for c in members))
            for (label, dataset, buffer_size), members in groups.items() if len(members) > 1]


def row_order(cells: list[Cell]) -> list[str]:
    """The labels of ``cells`` in table order: methods in their declared order, each
    before its GMS variants."""
    methods = [method.label for method in declarations().values()]

    def key(label: str):
        base = base_label(label)
        return (methods.index(base) if base in methods else len(methods),
                split_label(label)[0], " + GMS" in label, mask_order(label), label)
    return sorted({c.label for c in cells}, key=key)
