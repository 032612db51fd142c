"""Runs grouped into the cells of a table: one (row, column, buffer size), one value per
seed. A row is a :class:`Variant` (method, arguments, GMS) and a column a
:class:`Scenario` (benchmark and scenario): data, whose labels are derived for display and
never parsed back. Shared by the report's tables, its plots and the study's analyses."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import cache

from ..config import resolve
from ..core.methods import declarations
from ..errors import ConfigError


@dataclass(frozen=True)
class Variant:
    """A table's row, as data: the method, the arguments it ran with where they are not
    its best-args row's (and a network other than the benchmark's default), and GMS with
    its mask value (as stored: "-inf", "0.0", "detach") and whether replayed rows were
    masked too. Its label is derived, for display, and never parsed back."""

    method: str
    arguments: tuple[tuple[str, object], ...] = ()
    gms: bool = False
    mask_value: str = "-inf"
    on_buffer: bool = False

    @property
    def name(self) -> str:
        """The method's label: 'DER++'."""
        method = declarations().get(self.method)
        return method.label if method is not None else self.method

    @property
    def plain(self) -> Variant:
        """The same method and arguments without GMS: the comparison's base."""
        return Variant(self.method, self.arguments)

    def without(self, *names: str) -> Variant:
        """This variant with the arguments ``names`` left out (a search's own)."""
        return Variant(self.method, tuple(a for a in self.arguments if a[0] not in names),
                       self.gms, self.mask_value, self.on_buffer)

    @property
    def gms_part(self) -> str:
        """' (m=-inf)', ' (m=0.0, buffer masked)'; '' without GMS."""
        if not self.gms:
            return ""
        options = [f"m={self.mask_value}"] + (["buffer masked"] if self.on_buffer else [])
        return f" ({', '.join(options)})"

    @property
    def label(self) -> str:
        """'DER++', 'ER [lr=0.01] + GMS (m=-inf)', 'ER + GMS (m=0.0, buffer masked)'."""
        label = self.name
        if self.arguments:
            label += " [" + ", ".join(f"{name}={value}" for name, value in self.arguments) + "]"
        return label + (f" + GMS{self.gms_part}" if self.gms else "")

    @property
    def mask_order(self) -> float:
        """GMS variants in order of m: -inf, the numbers, then detach (no GMS first)."""
        if not self.gms:
            return -math.inf
        try:
            return float(self.mask_value)
        except ValueError:  # detach
            return math.inf


def variant_of(config: dict, provenance: dict | None = None,
               leave_out: tuple[str, ...] = ()) -> Variant:
    """A run's row (see :class:`Variant`); ``provenance`` (a result's) gives the best-args
    row the run was resolved with, where it was recorded; ``leave_out``: arguments not to
    name (a search's)."""
    arguments = tuple((name, value) for name, value in
                      changed_hyperparameters(config, provenance) if name not in leave_out)
    gms = bool(config.get("gms"))
    return Variant(config["model"], arguments, gms,
                   str(config.get("gms_mask_value", "-inf")) if gms else "-inf",
                   bool(config.get("gms_on_buffer")) and gms)


def method_label(config: dict, leave_out: tuple[str, ...] = ()) -> str:
    """A run's row label (:class:`Variant`): 'DER++', 'ER [lr=0.01] + GMS (m=-inf)'. Runs
    that differ in their arguments are never pooled in one cell."""
    return variant_of(config, leave_out=leave_out).label


def changed_hyperparameters(config: dict, provenance: dict | None = None
                            ) -> list[tuple[str, object]]:
    """The network, where it is not the benchmark's default, and the tunable settings (lr,
    replay batch, the method's own) whose stored value is not the one of the best-args row
    the run was resolved with (``provenance["best_args_values"]``, recorded with the run;
    for runs recorded before it was, the method's row as declared now), all of them where
    the benchmark has no best arguments (a user's own)."""
    network = [("net", network_label(config))] if config.get("backbone") else []
    defaults = None
    recorded = (provenance or {}).get("best_args_values")
    if recorded is not None and all(value is not None for value in recorded.values()):
        defaults = recorded
    elif config.get("benchmark_fingerprint") is None:
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


@dataclass(frozen=True)
class Scenario:
    """A table's benchmark column, as data: the benchmark (name, or name@fingerprint) and
    its scenario where it is not the protocol's: another task count, a class order, a
    validation split, or all class orders pooled."""

    dataset: str
    n_tasks: int | None = None
    class_order_seed: int | None = None
    validation_fraction: float = 0.0
    pooled: bool = False  # every class order of the runs, together

    @property
    def parts(self) -> list[str]:
        parts = [f"{self.n_tasks} tasks"] if self.n_tasks is not None else []
        if self.class_order_seed is not None:
            parts.append(f"order {self.class_order_seed}")
        if self.validation_fraction:
            parts.append(f"validation {self.validation_fraction:.0%}")
        return parts + (["orders pooled"] if self.pooled else [])

    @property
    def label(self) -> str:
        """'seq-mnist', 'seq-mnist (10 tasks)', 'seq-fmnist (order 3)',
        'seq-mnist (validation 10%)', 'seq-mnist (orders pooled)'."""
        return self.dataset + (f" ({', '.join(self.parts)})" if self.parts else "")

    @property
    def protocol(self) -> bool:
        """The protocol's own scenario (the main tables')."""
        return not self.parts


def scenario_of(config: dict) -> Scenario:
    """A stored configuration's column (it holds ``n_tasks`` only where it is not the
    benchmark's own)."""
    return Scenario(dataset_label(config), config.get("n_tasks"),
                    config.get("class_order_seed"), config.get("validation_fraction") or 0.0)


def benchmark_label(config: dict) -> str:
    """The dataset, and the scenario where it is not the protocol's: 'seq-mnist',
    'seq-mnist (10 tasks)', 'seq-fmnist (order 3)', 'seq-mnist (validation 10%)'. Runs of
    different scenarios are never pooled in one cell (but see :func:`pooled_over_orders`)."""
    return scenario_of(config).label


@dataclass
class Cell:
    """The runs of one (row, column, buffer size): one value per finished run, and how
    many runs of the cell failed (diverged) instead. ``variant`` is the row (method,
    arguments, GMS), ``column`` the benchmark and scenario; ``label`` and ``dataset`` are
    their labels, for display."""

    variant: Variant
    column: Scenario
    buffer_size: int
    results: list[dict]
    failed: int = 0

    @property
    def label(self) -> str:
        return self.variant.label

    @property
    def dataset(self) -> str:
        return self.column.label

    @property
    def scenario(self) -> str:
        """The scenario in words, '' for the protocol's: '10 tasks', 'order 3', ..."""
        return ", ".join(self.column.parts)

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

    def cell_of(config, provenance=None):
        key = (variant_of(config, provenance), scenario_of(config), config["buffer_size"])
        return cells.setdefault(key, Cell(*key, results=[]))
    for result in results:
        cell_of(result["config"], result.get("provenance")).results.append(result)
    for config in failed:
        cell_of(config).failed += 1
    return list(cells.values())


def pooled_over_orders(cells: list[Cell]) -> list[Cell]:
    """For every (method label, dataset, buffer size) run under two or more class orders
    (the natural one counts), one cell of all its runs, labelled 'seq-mnist (orders
    pooled)'. Its runs still pair on seed and class order."""
    groups: dict[tuple, list[Cell]] = {}
    for cell in cells:
        where = cell.column
        if where.n_tasks is not None or where.validation_fraction or where.pooled:
            continue  # other task counts and validation runs are not pooled
        groups.setdefault((cell.variant, where.dataset, cell.buffer_size), []).append(cell)
    return [Cell(variant, Scenario(dataset, pooled=True), buffer_size,
                 [r for c in members for r in c.results], sum(c.failed for c in members))
            for (variant, dataset, buffer_size), members in groups.items() if len(members) > 1]


def row_order(cells: list[Cell]) -> list[Variant]:
    """The rows of ``cells`` in table order: methods in their declared order, each before
    its GMS variants."""
    methods = list(declarations())

    def key(variant: Variant):
        return (methods.index(variant.method) if variant.method in methods else len(methods),
                variant.plain.label, variant.gms, variant.mask_order, variant.label)
    return sorted({c.variant for c in cells}, key=key)
