"""Runs grouped into the cells of a table: one (method and GMS variant, dataset, buffer
size), one value per seed. Shared by the report's tables and its plots."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ..core.methods import declarations


def method_label(config: dict) -> str:
    """'DER++', 'DER++ + GMS (m=-inf)', 'ER + GMS (m=0.0, buffer masked)', ..."""
    method = declarations().get(config["model"])
    label = method.label if method is not None else config["model"]
    if config.get("gms"):
        options = [f"m={config.get('gms_mask_value', '-inf')}"]
        if config.get("gms_on_buffer"):
            options.append("buffer masked")
        label += f" + GMS ({', '.join(options)})"
    return label


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
        base = label.split(" + GMS")[0]
        return (methods.index(base) if base in methods else len(methods), " + GMS" in label,
                label)
    return sorted({c.label for c in cells}, key=key)
