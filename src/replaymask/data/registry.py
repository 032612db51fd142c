"""Benchmarks by name: the built-in ones and those a user's module makes with
``@register_benchmark("name")``, for the command line and sweep files.

    @replaymask.register_benchmark("my-fmnist")
    def my_fmnist(tasks=5, root="/usr/share/datasets/fashion-mnist"):
        return replaymask.benchmark_from_tensors("my-fmnist", ...)

A registered function may take keyword options (``--dataset-option tasks=4``, or
``dataset_options: {tasks: 4}`` in a sweep file); it is called once per process and set
of options.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from ..errors import ConfigError, describe
from ..plugins import (
    check_new_name,
    check_registration,
    load_entry_point_plugins,
    qualified_name,
)
from .protocols import BENCHMARKS, BenchmarkInfo


@dataclass(frozen=True)
class RegisteredBenchmark:
    name: str
    function: Callable
    module: str

    @property
    def signature(self) -> str:
        """The function and its options, as written: ``my_fmnist(tasks=5)``."""
        found = _signature(self.function)
        return f"{self.function.__qualname__}{found if found is not None else '(...)'}"


_REGISTERED: dict[str, RegisteredBenchmark] = {}
_BUILT: dict[tuple[str, str], object] = {}  # (name, options as JSON) -> Benchmark


def register_benchmark(name: str):
    """Decorator: make ``name`` a benchmark of the command line and sweep files. The
    decorated function returns a :class:`~replaymask.data.benchmarks.Benchmark` and may
    take keyword options."""
    check_new_name("benchmark", name, BENCHMARKS)

    def register(function: Callable) -> Callable:
        earlier = _REGISTERED.get(name)
        check_registration("benchmark", name, earlier and earlier.function, function)
        entry = RegisteredBenchmark(name, function, getattr(function, "__module__", "?"))
        if earlier is not None and earlier.function is not function:  # the module re-imported
            for key in [key for key in _BUILT if key[0] == name]:
                del _BUILT[key]
        _REGISTERED[name] = entry
        return function
    return register


def benchmark_names() -> list[str]:
    """The built-in benchmarks, then the registered ones (installed plugins included)."""
    load_entry_point_plugins()
    return [*BENCHMARKS, *sorted(_REGISTERED)]


def registered_entries() -> dict[str, RegisteredBenchmark]:
    """The registered benchmarks by name (installed plugins included)."""
    load_entry_point_plugins()
    return dict(_REGISTERED)


def is_registered(name: str) -> bool:
    load_entry_point_plugins()
    return name in _REGISTERED


def unknown_benchmark(name) -> ConfigError:
    return ConfigError(f"--dataset: unknown benchmark {describe(name)} (known: "
                       f"{', '.join(benchmark_names())}; a module of yours registers more "
                       "with @replaymask.register_benchmark: load it with --import MODULE)")


def benchmark_info(name: str, options: Mapping | None = None) -> BenchmarkInfo:
    """What resolving a run on benchmark ``name`` needs: for a built-in one its protocol
    (nothing is loaded); for a registered one, the benchmark is built (once per process
    and options) and described."""
    if name in BENCHMARKS:
        if options:
            raise ConfigError(f"{name} is built in and takes no dataset options, got "
                              f"{', '.join(sorted(options))}")
        return BENCHMARKS[name].info(name)
    return registered_benchmark(name, options).info


def registered_benchmark(name: str, options: Mapping | None = None):
    """The benchmark registered as ``name``, built with the keyword ``options``."""
    load_entry_point_plugins()
    if name not in _REGISTERED:
        raise unknown_benchmark(name)
    options = dict(options or {})
    key = (name, canonical_options(options))
    if key not in _BUILT:
        _BUILT[key] = _build(_REGISTERED[name], options)
    return _BUILT[key]


def canonical_options(options: Mapping) -> str:
    """Options as canonical JSON (their identity); a ConfigError if they are not plain
    data (numbers, strings, true/false, null, lists and mappings of them)."""
    try:
        return json.dumps(dict(options), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        raise ConfigError(f"dataset options must be plain data (numbers, strings, lists, "
                          f"mappings), got {describe(dict(options))}") from None


def _build(entry: RegisteredBenchmark, options: dict):
    from .benchmarks import Benchmark

    signature = _signature(entry.function)
    if signature is not None:
        takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        accepted = [p.name for p in signature.parameters.values()
                    if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
        unknown = [key for key in options if key not in accepted]
        if unknown and not takes_any:
            raise ConfigError(f"benchmark {entry.name!r} takes no option {unknown[0]!r} "
                              f"(its options: {', '.join(accepted) or 'none'})")
    try:
        built = entry.function(**options)
    except ConfigError as error:
        raise ConfigError(f"benchmark {entry.name!r}: {error}") from None
    except Exception as error:
        message = str(error).splitlines()[0] if str(error) else ""
        raise ConfigError(f"benchmark {entry.name!r} ({qualified_name(entry.function)}) raised "
                          f"{type(error).__name__}" + (f": {message}" if message else "")
                          ) from None
    if not isinstance(built, Benchmark):
        raise ConfigError(f"benchmark {entry.name!r}: {qualified_name(entry.function)} must "
                          f"return a Benchmark (from replaymask.benchmark_from_tensors, ...), "
                          f"got {describe(built)}")
    if built.fingerprint is None:
        raise ConfigError(f"benchmark {entry.name!r} returned a built-in benchmark; "
                          f"use --dataset {built.name} instead")
    origin = {**built.origin, "registered": entry.name, "module": entry.module,
              "function": qualified_name(entry.function)}
    return replace(built, name=entry.name, origin=origin,
                   options=tuple(sorted(options.items())))


def _signature(function) -> inspect.Signature | None:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError):
        return None
