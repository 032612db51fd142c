"""Sweeps: a grid of runs read from YAML, run by local worker processes, each recorded
once in the results database under the hash of its resolved configuration."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import shutil
import socket
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from ..config import all_settings, resolve
from ..core.run_config import RunConfig
from ..errors import ConfigError, describe
from ..plugins import import_modules
from .store import ResultsStore

SCALARS = (str, int, float, bool, type(None))  # what a run setting in a sweep file may be
MAX_WORKER_DEATHS = 3  # a run whose worker dies this often is recorded as failed
MAX_RUNS = 100_000  # per grid: more is a mistake (e.g. a list where a value was meant)


class SweepError(ValueError):
    """The sweep file is unusable; the message names the problem."""


def sweep_keys() -> set[str]:
    """The keys a grid may use: every run setting, the methods' own included."""
    return set(all_settings())


@dataclass(frozen=True)
class Sweep:
    """A sweep file expanded: its distinct runs, each resolved once, and how many grid
    combinations there were (combinations that differ only in settings that cannot matter
    are one run). ``imports``: the user modules the runs need (imported here, and by every
    worker; ``import_folders`` are where worker processes look for them); ``objects``:
    the benchmarks and networks given as objects (Python grids), by
    ``("benchmark" | "net", fingerprint)``."""

    configs: list[RunConfig]
    combinations: int
    imports: tuple[str, ...] = ()
    import_folders: tuple[str, ...] = ()
    objects: dict = field(default_factory=dict)

    @property
    def merged(self) -> int:
        return self.combinations - len(self.configs)


def load_sweep(path: str | Path, imports: tuple[str, ...] = ()) -> list[RunConfig]:
    """Expand a sweep file into resolved, de-duplicated run configurations."""
    return read_sweep(path, imports).configs


def read_sweep(path: str | Path, imports: tuple[str, ...] = ()) -> Sweep:
    """Expand a sweep file: every combination of its settings resolved once.

    The file is one mapping of run settings (``model``, ``dataset``, ``buffer_size``,
    ``seed``, ``gms``, ``gms_mask_value``, a method's own such as ``alpha``, ... ; dashes
    or underscores), where any value may be a list: the runs are every combination.
    ``grids: [mapping, ...]`` unites several such grids (e.g. SGD without a buffer and ER
    with several buffers). A top-level ``import: [module, ...]`` (module names or ``.py``
    files, relative to the file's folder) imports the user's modules first, as
    ``imports`` (``--import``) does: their registered benchmarks and backbones become
    names the grids may use; importing a module runs its code. Any problem with the file
    is one SweepError naming it.
    """
    path = Path(path)
    document, imported, folders = load_document(path, imports)
    if isinstance(document, dict) and "grids" in document:
        if len(document) > 1:
            raise SweepError(f"{path}: 'grids' cannot be mixed with run settings: "
                             "put the settings in each grid")
        grids = document["grids"]
        if not isinstance(grids, list) or not grids:
            raise SweepError(f"{path}: 'grids' must be a non-empty list of mappings")
    else:
        grids = [document]
    expanded = expand_grids(grids, where=str(path), origin=f"sweep file {path.name}")
    return Sweep(expanded.configs, expanded.combinations, tuple(imported), folders,
                 expanded.objects)


def load_document(path: Path, imports: tuple[str, ...] = (),
                  kind: str = "sweep") -> tuple[object, list, tuple]:
    """A sweep or search file's YAML (``kind``: which, for the messages), with its
    top-level ``import:`` taken out and done (and ``imports``, the command line's):
    (document, what was imported, the folders workers look in). Any problem is one
    SweepError naming the file."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise SweepError(f"cannot read {kind} file {str(path)!r}: {reason}") from None
    except UnicodeDecodeError as error:
        raise SweepError(f"{path}: not valid YAML (not UTF-8 text: {error.reason} "
                         f"at byte {error.start})") from None
    try:
        document = yaml.load(text, Loader=_strict_loader())  # a SafeLoader: plain data only
    except _DuplicateKey as error:
        raise SweepError(f"{path}: key {describe(error.key)} is given twice in one mapping "
                         f"(line {error.line})") from None
    except RecursionError:
        raise SweepError(f"{path}: not valid YAML (nested too deeply)") from None
    except (yaml.YAMLError, ValueError) as error:  # ValueError: e.g. `!!int abc`, 2021-02-30
        raise SweepError(f"{path}: not valid YAML ({_first_line(error)})") from None
    listed = []
    if isinstance(document, dict) and "import" in document:
        listed = document.pop("import")
        listed = [listed] if isinstance(listed, str) else listed
        if not isinstance(listed, list) or not all(isinstance(m, str) for m in listed):
            raise SweepError(f"{path}: 'import' must be a module name or a list of them, "
                             f"got {describe(listed)}")
    # the file's own imports from its folder first, the command line's from the current one
    folders = (str(path.resolve().parent), str(Path.cwd()))
    try:
        imported = import_modules(imports, search=folders[1:])
        imported += import_modules(listed, search=folders)
    except ConfigError as error:
        raise SweepError(f"{path}: {error}") from None
    return document, imported, folders


def expand_grids(grids: list, where: str = "grid", origin: str = "grid") -> Sweep:
    """Every combination of each grid (a mapping of settings to a value or a list of
    values; from Python, ``dataset`` may be a Benchmark and ``backbone`` an nn.Module or a
    factory), resolved once; runs that are equal are kept once (the first one's
    provenance)."""
    configs: dict[str, RunConfig] = {}
    objects: dict = {}
    combinations = 0
    for grid in grids:
        expanded = _expand(where, grid, origin, objects)
        combinations += len(expanded)
        for config in expanded:
            configs.setdefault(config.hash, config)
    return Sweep(list(configs.values()), combinations, objects=objects)


class _DuplicateKey(Exception):
    def __init__(self, key, line: int):
        super().__init__(key, line)
        self.key, self.line = key, line


def _strict_loader():
    """YAML's safe loader, refusing a key given twice in one mapping (plain PyYAML keeps the
    last, so ``seed: [0, 1]`` followed by ``seed: 2`` would silently run seed 2 only)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden
                continue
            key = loader.construct_object(key_node)
            try:
                if key in seen:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1)
                seen.add(key)
            except TypeError:  # an unhashable key: construct_mapping says so
                pass
        return loader.construct_mapping(node)

    StrictLoader.add_constructor("tag:yaml.org,2002:map", mapping)
    return StrictLoader


def _first_line(error: Exception) -> str:
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__


def _expand(path: str, grid, origin: str, objects: dict) -> list[RunConfig]:
    if not isinstance(grid, dict) or not grid:
        raise SweepError(f"{path}: a grid must be a non-empty mapping of run settings")
    settings = all_settings()
    axes, spelled = {}, {}
    for raw_key, value in grid.items():
        key = raw_key.replace("-", "_") if isinstance(raw_key, str) else None
        if key not in settings:
            known = ", ".join(sorted(settings))
            raise SweepError(f"{path}: unknown key {describe(raw_key)} (known: {known})")
        if key in axes:
            raise SweepError(f"{path}: {spelled[key]!r} and {raw_key!r} are the same setting")
        kind = settings[key].kind
        list_valued = kind in ("epochs", "options")  # a single value is a list, a mapping
        if kind == "epochs":
            values = _list_setting(path, raw_key, value)
        elif kind == "options":
            values = _options_setting(path, raw_key, value)
        else:
            values = value if isinstance(value, list) else [value]
        if not values:
            raise SweepError(f"{path}: key {raw_key!r} has an empty list: the grid is empty")
        if not list_valued and not all(isinstance(v, SCALARS) or _is_object(kind, v)
                                       for v in values):
            raise SweepError(f"{path}: key {raw_key!r} must hold a value or a list of values "
                             f"(numbers, strings, true/false or null), got {describe(value)}")
        axes[key], spelled[key] = values, raw_key
    runs = math.prod(len(values) for values in axes.values())
    if runs > MAX_RUNS:
        raise SweepError(f"{path}: a grid of {runs} runs is more than {MAX_RUNS}: "
                         "is a list where a single value was meant?")
    configs = []
    for combination in itertools.product(*axes.values()):
        run = dict(zip(axes, combination, strict=True))
        try:
            config = resolve(run, origin=origin)
        except ConfigError as error:
            shown = ", ".join(f"{k!r}: {describe(v)}" for k, v in run.items())
            raise SweepError(f"{path}: run {{{shown}}}: {error}") from None
        if not isinstance(run.get("dataset", ""), str):
            objects[benchmark_key(config)] = run["dataset"]
        if not isinstance(run.get("backbone", ""), str):
            objects[network_key(config)] = run["backbone"]
        configs.append(config)
    return configs


def benchmark_key(config: RunConfig) -> tuple:
    """How a sweep's benchmark object is found for a run: its name and fingerprint."""
    return ("benchmark", config.dataset, config.benchmark_fingerprint)


def network_key(config: RunConfig) -> tuple:
    """How a sweep's network object (nn.Module or factory) is found for a run."""
    return ("net", config.network.kind, config.backbone, config.backbone_fingerprint)


def _is_object(kind: str, value) -> bool:
    """A benchmark or a network given as an object (from Python; never in a YAML file)."""
    if kind == "benchmark":
        return hasattr(value, "train_inputs") and hasattr(value, "fingerprint")
    return kind == "backbone" and callable(value)


def _options_setting(path: str, raw_key, value) -> list:
    """A registered benchmark's options: a mapping is one value; a list of mappings (or
    nulls: none) the values of an axis."""
    options = value if isinstance(value, list) else [value]
    for option in options:
        if option is not None and not isinstance(option, dict):
            raise SweepError(f"{path}: key {raw_key!r} must be a mapping of options (or a "
                             f"list of such mappings), got {describe(option)}")
    return options


def _list_setting(path: str, raw_key, value) -> list:
    """A setting whose value is itself a list (``lr_milestones: [35, 45]``): a flat list
    is one value; a list of lists (or nulls: the default) is the values of an axis
    (``[[], [35, 45], null]``)."""
    if value is None or value == []:
        return [value] if value is None else [()]
    if not isinstance(value, list):
        raise SweepError(f"{path}: key {raw_key!r} must be a list of epochs (or a list of "
                         f"such lists), got {describe(value)}")
    options = value if all(v is None or isinstance(v, list) for v in value) else [value]
    for option in options:
        if option is not None and not all(isinstance(v, int) and not isinstance(v, bool)
                                          for v in option):
            raise SweepError(f"{path}: key {raw_key!r} must hold integer epochs, got "
                             f"{describe(option)}")
    return [None if option is None else tuple(option) for option in options]


@dataclass
class SweepSummary:
    total: int
    already_done: int
    ran: int
    failed: int
    skipped_failed: int


@dataclass(frozen=True)
class WorkerContext:
    """What every worker of a sweep shares: where built-in data is, the user modules to
    import (from ``import_folders`` too), the benchmarks and networks given as objects
    (by ``("benchmark" | "net", fingerprint)``), and the live-log folders."""

    data_root: str | None = None
    imports: tuple[str, ...] = ()
    import_folders: tuple[str, ...] = ()
    objects: dict = field(default_factory=dict)
    tensorboard_root: str | None = None
    wandb_root: str | None = None


def run_sweep(configs: list[RunConfig], store: ResultsStore, workers: int = 2,
              retry_failed: bool = False, data_root: str | None = None,
              progress: bool = True, ray_address: str | None = None,
              ray_cpus_per_run: float = 1.0, checkpoint_root: str | Path | None = None,
              tensorboard_root: str | None = None, wandb_root: str | None = None,
              imports: tuple[str, ...] = (), import_folders: tuple[str, ...] = (),
              objects: dict | None = None) -> SweepSummary:
    """Run every configuration not yet done in ``store``; each result is recorded as it ends.

    Runs go to ``workers`` local processes, or, with ``ray_address``, one Ray task each
    on that cluster (``ray_cpus_per_run`` CPUs reserved per task). With
    ``checkpoint_root``, each run checkpoints at every task end into
    ``checkpoint_root/<config hash>/`` and resumes from there when it is started again
    (after its worker died, or in a later sweep); the folder is removed once the result
    is recorded. A run is recorded once: its hash is the database's key. With
    ``tensorboard_root``, each run writes its TensorBoard logs into its own subfolder there
    (:mod:`.tensorboard`); with ``wandb_root``, each run is a W&B run kept there
    (:mod:`.weights_and_biases`). Every worker imports ``imports`` (from
    ``import_folders`` too) before its first run, and has ``objects`` (see :class:`Sweep`).
    """
    context = WorkerContext(data_root, tuple(imports), tuple(import_folders),
                            dict(objects or {}), tensorboard_root, wandb_root)
    statuses = store.statuses()
    pending, skipped_failed = [], 0
    for config in configs:
        status = statuses.get(config.hash)
        if status == "done":
            continue
        if status == "failed" and not retry_failed:
            skipped_failed += 1
            continue
        pending.append(config)
    if ray_address is not None:
        outcomes = _run_on_ray(pending, context, ray_address, ray_cpus_per_run,
                               checkpoint_root)
    else:
        outcomes = _run_locally(pending, context, workers, checkpoint_root)
    failed = 0
    with tqdm(total=len(pending), disable=not progress, unit="run", desc="sweep") as bar:
        for config, result, error in outcomes:
            store.record(config.hash, config.to_dict(), result=result, error=error)
            if checkpoint_root is not None and error is None:  # recorded: no longer needed
                shutil.rmtree(_checkpoint_dir(checkpoint_root, config), ignore_errors=True)
            failed += error is not None
            bar.update(1)
            bar.set_postfix_str(f"{failed} failed")
    if checkpoint_root is not None and Path(checkpoint_root).is_dir():
        with contextlib.suppress(OSError):
            Path(checkpoint_root).rmdir()  # only if no run left a checkpoint behind
    done_before = sum(1 for c in configs if statuses.get(c.hash) == "done")
    return SweepSummary(total=len(configs), already_done=done_before, ran=len(pending),
                        failed=failed, skipped_failed=skipped_failed)


def _run_locally(pending: list[RunConfig], context: WorkerContext, workers: int,
                 checkpoint_root):
    """Run ``pending`` on a pool of worker processes, each given ``context`` once. A worker
    that dies (killed, out of memory) breaks the pool: the runs it took down are started
    again on a fresh pool, from their checkpoints, up to MAX_WORKER_DEATHS times each."""
    deaths: dict[str, int] = {}
    while pending:
        retry = []
        # no more processes than runs: the pool may start all of its workers at once
        with ProcessPoolExecutor(max_workers=min(workers, len(pending)),
                                 initializer=_start_worker, initargs=(context,)) as pool:
            futures = {pool.submit(execute_run, config, context.data_root,
                                   _checkpoint_dir(checkpoint_root, config)): config
                       for config in pending}
            try:
                for future in as_completed(futures):
                    config = futures[future]
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        key = config.hash
                        deaths[key] = deaths.get(key, 0) + 1
                        if deaths[key] < MAX_WORKER_DEATHS:
                            retry.append(config)
                            continue
                        outcome = (None, f"the worker process running it died "
                                         f"{MAX_WORKER_DEATHS} times")
                    yield (config, *outcome)
            except BaseException:
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        pending = retry


def _checkpoint_dir(checkpoint_root, config: RunConfig) -> str | None:
    return None if checkpoint_root is None else str(Path(checkpoint_root) / config.hash)


def _run_on_ray(pending: list[RunConfig], context: WorkerContext, address: str,
                cpus_per_run: float, checkpoint_root):
    ray = connect_ray(address)
    try:
        # a task whose worker died is retried (from its checkpoint, on a shared filesystem)
        task = ray.remote(num_cpus=cpus_per_run, max_retries=MAX_WORKER_DEATHS - 1)(_ray_run)
        shared = ray.put(context)  # stored once, however many tasks read it
        running = {task.remote(config, shared, _checkpoint_dir(checkpoint_root, config)): config
                   for config in pending}
        while running:
            (ready,), _ = ray.wait(list(running), num_returns=1)
            config = running.pop(ready)
            try:
                result, error = ray.get(ready)
            except ray.exceptions.RayError as ray_error:  # the worker died, say
                result, error = None, f"{type(ray_error).__name__}: {ray_error}".splitlines()[0]
            yield config, result, error
    finally:
        ray.shutdown()


def connect_ray(address: str):
    """Connect to a running Ray cluster, or fail with one clear line (SweepError)."""
    try:
        import ray
    except ImportError:
        raise SweepError("--ray-address needs Ray: pip install 'replaymask[ray]'") from None
    if ray.is_initialized():
        return ray
    if address != "auto":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise SweepError(f"--ray-address must be 'auto' or HOST:PORT, got {address!r}")
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as error:
            raise SweepError(f"no Ray cluster reachable at {address} ({error})") from None
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False,
                 configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise SweepError(f"could not connect to Ray at {address!r}: {message}") from None
    return ray


# Per worker process: its context (set once by _start_worker) and each base benchmark,
# loaded or built once.
_CONTEXT: list[WorkerContext] = [WorkerContext()]
_BENCHMARKS: dict = {}


def _registering_modules(config: RunConfig) -> list[str]:
    """The modules that registered the run's benchmark and network by name (a Python
    sweep's worker imports them itself: nothing else names them)."""
    found = [config.benchmark.origin.get("module")] if config.benchmark.origin.get(
        "registered") else []
    if config.network.kind == "registered":
        found.append(config.network.factory.rpartition(".")[0].split(".<locals>")[0])
    return [module for module in found if module and module != "__main__"
            and not module.startswith("replaymask_user_")]


def _start_worker(context: WorkerContext) -> None:
    """A worker's first act: keep the sweep's context and import the user's modules (a
    module that fails is reported by each run: see :func:`execute_run`)."""
    _CONTEXT[0] = context
    # a module that fails: execute_run imports it again and records the error with the run
    with contextlib.suppress(ConfigError):
        import_modules(context.imports, search=context.import_folders)


def _ray_run(config: RunConfig, context: WorkerContext, checkpoint_dir: str | None):
    _start_worker(context)
    return execute_run(config, context.data_root, checkpoint_dir)


def execute_run(config: RunConfig, data_root: str | None, checkpoint_dir: str | None = None
                ) -> tuple[dict | None, str | None]:
    """Run one resolved configuration in a worker process: (result, None) or (None, error).
    With ``checkpoint_dir`` it checkpoints at every task end and resumes from there; the
    worker's context (:func:`_start_worker`) gives the user's modules and objects and the
    live-log folders."""
    import torch

    from ..core.training import Checkpointing
    from .execution import RunOptions, benchmark_for, execute

    # one core per worker, from its first op on (a forked worker's first multi-threaded op
    # can deadlock in a thread pool the parent had started)
    torch.set_num_threads(1)
    context = _CONTEXT[0]
    try:
        import_modules([*context.imports, *_registering_modules(config)],
                       search=context.import_folders)
        objects = context.objects
        key = (config.dataset, config.benchmark_fingerprint,
               json.dumps(dict(config.dataset_options), sort_keys=True), data_root)
        if key not in _BENCHMARKS:
            given = objects.get(benchmark_key(config))
            _BENCHMARKS[key] = benchmark_for(config, given, data_root, download=False)
        net = objects.get(network_key(config)) \
            if config.network.kind in ("module", "factory") else None
        checkpointing = None if checkpoint_dir is None else Checkpointing(
            Path(checkpoint_dir), resume=True, warn=lambda message: None)
        options = RunOptions(data_root=data_root, download=False, progress=False, threads=1,
                             checkpointing=checkpointing,
                             tensorboard=context.tensorboard_root, wandb=context.wandb_root)
        return execute(config, _BENCHMARKS[key], net, options).to_dict(), None
    except Exception as error:  # recorded in the database, re-run with --retry-failed
        where = traceback.extract_tb(error.__traceback__)[-1]
        return None, f"{type(error).__name__}: {error} ({Path(where.filename).name}:{where.lineno})"
