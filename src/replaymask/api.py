"""replaymask from Python: run one configuration, run a sweep, read a results database.

    >>> import replaymask
    >>> result = replaymask.run(model="derpp", dataset="seq-mnist", gms=True)  # doctest: +SKIP
    >>> result.class_il, result.accuracy_matrix["class_il"][-1]                # doctest: +SKIP

The command line is a thin layer over these functions. A mistake in the settings raises
:class:`~replaymask.errors.ConfigError` (one line naming it) before anything is trained
or written; missing data raises :class:`~replaymask.data.sources.DataError`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .config import resolve
from .core.methods import MethodDeclaration, declarations
from .core.results import RunResult
from .core.run_config import RunConfig
from .errors import ConfigError
from .experiments.execution import execute, log_folders, run_options
from .experiments.store import DEFAULT_DB, ResultsStore
from .experiments.sweep import Sweep, SweepSummary, expand_grids, read_sweep, run_sweep


def run(model: str | None = None, dataset=None, *, net=None,
        data_root: str | Path | None = None, download: bool = True,
        out: str | Path | None = None, progress: bool = True, threads: int | None = None,
        analysis: bool = False, checkpoint_dir: str | Path | None = None,
        checkpoint_every: int = 0, resume: bool = False,
        tensorboard: str | Path | None = None, wandb: str | Path | None = None,
        **settings) -> RunResult:
    """Train one method on one benchmark and return its :class:`RunResult`.

    ``dataset``: a benchmark's name (built in, or registered with
    :func:`~replaymask.data.registry.register_benchmark`) or a
    :class:`~replaymask.data.benchmarks.Benchmark` (:func:`benchmark_from_tensors`, ...).
    ``net``: the network, an ``nn.Module`` with one output per class (each run starts
    from a copy of its weights), a factory ``f(num_classes) -> nn.Module`` (called after
    the seed is set) or a backbone's name; default: the one the benchmark's inputs suit.
    ``settings`` are run settings by name (``buffer_size=200``, ``seed=1``, ``gms=True``,
    ``gms_mask_value=0.0``, ``lr=0.05``, a method's own such as ``alpha=0.3``); what is
    not given comes from the benchmark's protocol and the method's best arguments.
    Settings that cannot change the run (a mask value without ``gms``) are dropped with a
    warning. Nothing is written unless ``out`` names a folder (``result.json`` and
    ``accuracy_matrix.csv``). See :func:`run_config` for the other arguments.
    """
    if net is not None and settings.get("backbone") is not None:
        raise ConfigError("give net= or backbone=, not both")
    if net is None and _is_object(settings.get("backbone")):
        net = settings.pop("backbone")  # an object under its sweep-grid key
    request = {key: value for key, value in (("model", model), ("dataset", dataset),
                                             ("backbone", net)) if value is not None}
    config = resolve({**request, **settings}, origin="Python")
    for name, why in config.provenance.ignored:
        warnings.warn(f"replaymask: {name} ignored: {why}", stacklevel=2)
    return run_config(config, benchmark=dataset if _is_object(dataset) else None,
                      net=net if _is_object(net) else None, data_root=data_root,
                      download=download, out=out, progress=progress, threads=threads,
                      analysis=analysis, checkpoint_dir=checkpoint_dir,
                      checkpoint_every=checkpoint_every, resume=resume,
                      tensorboard=tensorboard, wandb=wandb)


def _is_object(value) -> bool:
    return value is not None and not isinstance(value, str)


def run_config(config: RunConfig, *, benchmark=None, net=None,
               data_root: str | Path | None = None,
               download: bool = True, out: str | Path | None = None, progress: bool = True,
               threads: int | None = None, analysis: bool = False,
               checkpoint_dir: str | Path | None = None, checkpoint_every: int = 0,
               resume: bool = False, tensorboard: str | Path | None = None,
               wandb: str | Path | None = None, log: Callable[[str], None] | None = None,
               warn: Callable[[str], None] | None = None) -> RunResult:
    """Train a resolved configuration (:func:`replaymask.config.resolve`).

    ``benchmark`` and ``net``: the Benchmark object and the network object (nn.Module or
    factory) the configuration was resolved with, where they are objects rather than
    names. ``threads``: CPU threads for torch during the run (default: 1 for the built-in
    MLP when every batch is under 64 rows, where thread hand-offs cost more than they
    save; else torch's choice). ``analysis`` records the stability instrumentation
    (``result.analysis``). ``checkpoint_dir`` saves a checkpoint at every task end (and
    every ``checkpoint_every`` steps); ``resume`` continues from the newest sound one.
    ``tensorboard`` names a folder for live TensorBoard logs (the ``tensorboard`` extra):
    the run writes ``<tensorboard>/<run name>_<hash>/``
    (:mod:`replaymask.experiments.tensorboard`); ``wandb`` one for Weights & Biases (the
    ``wandb`` extra; offline unless ``WANDB_MODE`` says otherwise:
    :mod:`replaymask.experiments.weights_and_biases`). ``log`` receives a line naming the run,
    its hyper-parameters and data once they are loaded; ``warn`` receives warnings about
    unreadable checkpoints.
    """
    options = run_options(data_root=data_root, download=download, out=out, progress=progress,
                          threads=threads, analysis=analysis, checkpoint_dir=checkpoint_dir,
                          checkpoint_every=checkpoint_every, resume=resume,
                          tensorboard=tensorboard, wandb=wandb, log=log, warn=warn)
    return execute(config, benchmark, net, options)


def plan_sweep(grids: str | Path | Mapping | list[Mapping]) -> Sweep:
    """The runs of a sweep: a YAML file's path, one grid (a mapping of settings to a value
    or a list of values; ``dataset`` may be a Benchmark and ``backbone`` an nn.Module or
    a factory), or a list of grids; every combination resolved once."""
    if isinstance(grids, (str, Path)):
        return read_sweep(grids)
    return expand_grids([grids] if isinstance(grids, Mapping) else list(grids),
                        origin="Python")


def sweep(grids: str | Path | Mapping | list[Mapping], db: str | Path = DEFAULT_DB, *,
          workers: int = 2, retry_failed: bool = False, data_root: str | Path | None = None,
          progress: bool = True, ray_address: str | None = None,
          ray_cpus_per_run: float = 1.0, checkpoint_dir: str | Path | None = None,
          checkpoints: bool = True, tensorboard: str | Path | None = None,
          wandb: str | Path | None = None) -> SweepSummary:
    """Run every run of ``grids`` (see :func:`plan_sweep`) not yet done in the results
    database ``db``, on ``workers`` local processes or a Ray cluster; resumable.

    Each run checkpoints at every task end into ``checkpoint_dir`` (default:
    ``DB.checkpoints/`` beside the database), so that a run whose worker died continues
    where it was; ``checkpoints=False`` restarts such runs instead. With ``tensorboard``
    (a folder), every run writes its live TensorBoard logs into its own subfolder there
    (on Ray: a folder every node can write to), so that TensorBoard's HParams view lists
    the runs side by side; with ``wandb``, every run is a W&B run kept there (offline unless
    ``WANDB_MODE`` says otherwise).
    """
    planned = plan_sweep(grids)
    tensorboard, wandb = log_folders(tensorboard, wandb)
    db = Path(db)
    checkpoint_root = None
    if checkpoints:
        checkpoint_root = Path(checkpoint_dir) if checkpoint_dir is not None \
            else db.with_name(db.name + ".checkpoints")
    store = ResultsStore(db, create=True)
    try:
        return run_sweep(planned.configs, store, workers=workers, retry_failed=retry_failed,
                         data_root=str(data_root) if data_root is not None else None,
                         progress=progress, ray_address=ray_address,
                         ray_cpus_per_run=ray_cpus_per_run, checkpoint_root=checkpoint_root,
                         tensorboard_root=str(tensorboard) if tensorboard is not None else None,
                         wandb_root=str(wandb) if wandb is not None else None,
                         imports=planned.imports, import_folders=planned.import_folders,
                         objects=planned.objects)
    finally:
        store.close()


@dataclass(frozen=True)
class RunRecord:
    """One run of a results database."""

    hash: str
    status: str  # "done" or "failed"
    config: dict
    result: dict | None  # result.json's content, for a finished run
    error: str | None
    wall_time_s: float | None
    finished_at: str
    attempts: int

    def row(self) -> dict:
        """Flat: the configuration's settings, then the summary metrics (for a table)."""
        row = {"hash": self.hash, "status": self.status, **self.config}
        if self.result is not None:
            for setting, metrics in self.result["metrics"].items():
                for name, value in metrics.items():
                    row[f"{setting}_{name}"] = value
            row["wall_time_s"] = self.wall_time_s
            row["hyperparameter_source"] = self.result.get("hyperparameter_source")
        else:
            row["error"] = self.error
        return row


def load_runs(db: str | Path = DEFAULT_DB, status: str | None = None) -> list[RunRecord]:
    """The runs stored in ``db`` (oldest first), optionally only those with ``status``."""
    if status not in (None, "done", "failed"):
        raise ConfigError(f"status must be 'done', 'failed' or None, got {status!r}")
    store = ResultsStore(db, create=False)
    try:
        rows = store.runs(status)
    finally:
        store.close()
    return [RunRecord(hash=row["config_hash"], status=row["status"], config=row["config"],
                      result=row["result"], error=row["error"],
                      wall_time_s=row["wall_time_s"], finished_at=row["finished_at"],
                      attempts=row["attempts"]) for row in rows]


def runs_dataframe(db: str | Path = DEFAULT_DB, status: str | None = "done"):
    """The runs of ``db`` as a pandas DataFrame, one row each (see :meth:`RunRecord.row`)."""
    try:
        import pandas
    except ImportError:
        raise ImportError("runs_dataframe needs pandas: pip install pandas "
                          "(load_runs gives the same records without it)") from None
    return pandas.DataFrame([record.row() for record in load_runs(db, status)])


def methods() -> dict[str, MethodDeclaration]:
    """Every method, by its ``--model`` name, as its file declares it."""
    return dict(declarations())
