"""The continual-learning methods: one file each, found here by the registry.

A method file (``er.py``, ``derpp.py``, ...) holds the method's class and declares
everything else about it in one literal, ``METHOD = {...}``:

* ``name`` (its ``--model`` value, the file's name), ``label`` (in reports), ``class``
  (the class in the file), ``order`` (its place in tables and listings);
* ``buffer``: whether it keeps a replay buffer (without one, ``--buffer-size`` is 0);
  ``stores_logits``: whether the buffer keeps logits too;
* ``settings``: its own settings, each ``{"kind": ..., "help": ..., "minimum": ...,
  "default": ...}`` as in :class:`~replaymask.core.settings.Setting`; they become
  command-line flags, sweep-file keys and checks (a setting added once runs of the
  method are stored says ``"omit_default": True``: at its default it stays out of the
  config's hash);
* ``best_args``: per benchmark, ``(source, {buffer size: {setting: value}})``, the rows
  that fill what the user does not set (the nearest buffer size is used; the key None
  serves any size); ``best_args_of``: another method whose rows it uses instead;
  ``best_args_fallback``: a benchmark whose rows serve benchmarks without any;
* ``equal_tasks``: why the method needs tasks of equal size, where it does (a run on a
  benchmark with tasks of different sizes is then refused, with the reason);
* ``gms``: how GMS applies to the method, ``(kind, how)``: kind ``"stream"`` (the
  stream cross-entropy is GMS-masked), ``"rows"`` (one cross-entropy over stream and
  replayed rows, with a row mask: stream rows masked, replayed rows only with
  ``--gms-on-buffer``), ``"built-in"`` (the method masks with -inf itself, and ``--gms``
  exposes that mask as m) or ``"none"`` (``--gms`` is refused, ``how`` saying why).

The registry reads these literals without importing the method modules (which import
torch), so the command line's help, checks and listings start without torch; the class
is imported when a run is built. Adding a method is adding its file.
"""

from __future__ import annotations

import ast
import importlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..settings import Setting

DECLARATION_KEYS = {"name", "label", "class", "order", "buffer", "stores_logits", "settings",
                    "best_args", "best_args_of", "best_args_fallback", "equal_tasks", "gms"}
REQUIRED_KEYS = {"name", "label", "class", "order", "buffer", "gms"}
GMS_KINDS = ("stream", "rows", "built-in", "none")
SETTING_KEYS = {"kind", "help", "default", "minimum", "maximum", "above_minimum", "choices",
                "omit_default"}


class DeclarationError(Exception):
    """A method file's ``METHOD`` declaration is malformed (a programming error)."""


@dataclass(frozen=True)
class BestArgsRow:
    """The row of best arguments chosen for a run, and a note saying which it is."""

    values: dict
    note: str


@dataclass(frozen=True)
class GMSUse:
    """How GMS applies to a method (its declaration's ``gms``): ``kind`` one of
    :data:`GMS_KINDS`, ``how`` in words (for ``"none"``: why not)."""

    kind: str
    how: str

    @property
    def applies(self) -> bool:
        return self.kind != "none"


@dataclass(frozen=True)
class MethodDeclaration:
    name: str
    label: str
    class_name: str
    module: str
    summary: str  # the first line of the file's docstring
    order: float
    uses_buffer: bool
    stores_logits: bool
    settings: tuple[Setting, ...]
    best_args: dict  # benchmark -> (source, {buffer size or None: row})
    best_args_of: str | None
    best_args_fallback: str | None
    gms: GMSUse = GMSUse("stream", "")
    needs_equal_tasks: str = ""  # why, where the method needs tasks of equal size

    def best_args_row(self, dataset: str, buffer_size: int,
                      benchmark_fallback: str | None) -> BestArgsRow | None:
        """The best-args row for ``dataset`` (the nearest buffer size), or None if neither
        the dataset, the benchmark's fallback (``benchmark_fallback``: Seq-FMNIST uses
        Seq-MNIST's) nor the method's fallback has one."""
        owner = declaration(self.best_args_of) if self.best_args_of else self
        tables = owner.best_args
        table = next((name for name in (dataset, benchmark_fallback, self.best_args_fallback)
                      if name is not None and name in tables), None)
        if table is None:
            return None
        source, rows = tables[table]
        if None in rows:  # one row for any buffer size
            values = rows[None]
            shown = ", ".join(f"{key} {value}" for key, value in values.items())
            note = f"{source} for {owner.name} on {table} ({shown})"
        else:
            size = min(rows, key=lambda row: (abs(row - buffer_size), row))
            values = rows[size]
            note = f"{source} best args for {table}, {owner.name}, buffer {size}"
            if size != buffer_size:
                note += f" (nearest row to buffer {buffer_size})"
        if table != dataset:
            note += f" (no row for {dataset})"
        if owner is not self:
            note += f" ({owner.label}'s, used for {self.name})"
        return BestArgsRow(dict(values), note)


@cache
def declarations() -> dict[str, MethodDeclaration]:
    """Every method declared in this folder, in their declared order."""
    found = []
    for path in sorted(Path(__file__).parent.glob("*.py")):
        declared = _read_declaration(path)
        if declared is not None:
            found.append(declared)
    methods = {d.name: d for d in sorted(found, key=lambda d: (d.order, d.name))}
    _check_shared_settings(methods)
    for method in methods.values():
        if method.best_args_of is not None and method.best_args_of not in methods:
            raise DeclarationError(f"{method.name}: best_args_of names an unknown method "
                                   f"{method.best_args_of!r}")
    return methods


def declaration(name: str) -> MethodDeclaration:
    return declarations()[name]


def method_class(name: str) -> type:
    """The method's class (this imports its module, and torch)."""
    method = declaration(name)
    return getattr(importlib.import_module(method.module), method.class_name)


def method_names() -> tuple[str, ...]:
    return tuple(declarations())


def _read_declaration(path: Path) -> MethodDeclaration | None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    node = next((statement.value for statement in tree.body
                 if isinstance(statement, ast.Assign)
                 and any(isinstance(t, ast.Name) and t.id == "METHOD" for t in statement.targets)),
                None)
    if node is None:
        return None
    try:
        raw = ast.literal_eval(node)
    except ValueError:
        raise DeclarationError(f"{path.name}: METHOD must be a plain literal (no names, "
                               "calls or expressions), so that it can be read without "
                               "importing the module") from None
    return _declaration_from(raw, path, ast.get_docstring(tree) or "")


def _declaration_from(raw, path: Path, docstring: str) -> MethodDeclaration:
    where = path.name
    if not isinstance(raw, dict):
        raise DeclarationError(f"{where}: METHOD must be a dict")
    unknown, missing = set(raw) - DECLARATION_KEYS, REQUIRED_KEYS - set(raw)
    if unknown or missing:
        raise DeclarationError(f"{where}: METHOD has unknown keys {sorted(unknown)} or lacks "
                               f"{sorted(missing)}")
    if raw["name"] != path.stem:
        raise DeclarationError(f"{where}: METHOD's name {raw['name']!r} must be the file's")
    settings = []
    for name, spec in raw.get("settings", {}).items():
        if not isinstance(spec, dict) or set(spec) - SETTING_KEYS:
            raise DeclarationError(f"{where}: setting {name!r} must be a dict with keys from "
                                   f"{sorted(SETTING_KEYS)}")
        spec = {**spec, "choices": tuple(spec.get("choices", ()))}
        try:
            settings.append(Setting(name=name, **spec))
        except (TypeError, ValueError) as error:
            raise DeclarationError(f"{where}: setting {name!r}: {error}") from None
    gms = raw["gms"]
    if not (isinstance(gms, tuple) and len(gms) == 2 and gms[0] in GMS_KINDS
            and isinstance(gms[1], str) and gms[1]):
        raise DeclarationError(f"{where}: gms must be (kind, how) with kind one of "
                               f"{', '.join(GMS_KINDS)}")
    best_args = raw.get("best_args", {})
    for table, entry in best_args.items():
        if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)
                and isinstance(entry[1], dict) and entry[1]):
            raise DeclarationError(f"{where}: best_args[{table!r}] must be (source, "
                                   "{buffer size: row})")
    return MethodDeclaration(
        name=raw["name"], label=raw["label"], class_name=raw["class"],
        module=f"{__name__}.{path.stem}", summary=docstring.strip().splitlines()[0]
        if docstring.strip() else "", order=raw["order"], uses_buffer=raw["buffer"],
        stores_logits=raw.get("stores_logits", False), settings=tuple(settings),
        best_args=best_args, best_args_of=raw.get("best_args_of"),
        best_args_fallback=raw.get("best_args_fallback"), gms=GMSUse(*gms),
        needs_equal_tasks=raw.get("equal_tasks", ""))


def _check_shared_settings(methods: dict[str, MethodDeclaration]) -> None:
    """A setting several methods declare (``alpha``) is one flag: its kind, bounds and
    default must agree."""
    seen: dict[str, tuple[str, Setting]] = {}
    for method in methods.values():
        for setting in method.settings:
            if setting.name in seen:
                first_method, first = seen[setting.name]
                same = (first.kind, first.minimum, first.maximum, first.above_minimum,
                        first.choices, first.default) == (
                    setting.kind, setting.minimum, setting.maximum, setting.above_minimum,
                    setting.choices, setting.default)
                if not same:
                    raise DeclarationError(f"setting {setting.name!r} is declared differently "
                                           f"by {first_method} and {method.name}")
            else:
                seen[setting.name] = (method.name, setting)
