"""Hyper-parameter search per cell, with Optuna: both sides of a comparison tuned alike.

A search file names the cells (grids of run settings, as a sweep file's), the space of the
settings to search, the trials per cell, the seeds each trial runs and the validation
split it is scored on, and the seeds of the test runs of each cell's selection::

    cells:
      - {model: er, gms: [false, true], buffer_size: [20, 200], dataset: seq-mnist}
    space:
      lr: {log: [0.001, 0.3]}              # log-uniform
      minibatch_size: {choice: [10, 32]}   # one of
      gms_mask_value: {choice: [-inf, -2, 0]}
    trials: 20
    startup_trials: 8                       # random trials before TPE models the rest
    seeds: [0, 1]                           # each trial's runs; its value is their mean
    validation_fraction: 0.1                # trials never see the test set
    test_seeds: [10, 11, 12]                # the selected configurations' test runs

A setting of the space is searched only in the cells where it can matter: the mask value
with GMS, the replay batch with a buffer, a method's own settings (``alpha``) for the
methods that declare them. Every cell has its own seeded ``TPESampler`` (the seed: the
SHA-256 of the cell's key), its state in an Optuna journal file, and every run of every
trial is a run of the results database under its config hash: an interrupted search
resumes (a trial left running is scored again from the runs it had finished) and can be
audited run by run. A trial with a diverged run fails and is never selected; a cell
selects its completed trial of the highest value (the lower trial number on ties).
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..config import all_settings, resolve
from ..core.methods import declaration
from ..errors import ConfigError, describe
from .store import ResultsStore
from .sweep import SweepError, load_document

SEARCH_TRIAL_FAILURE = " [a search trial's run]"  # ends a failed trial run's error
ORIGIN = "search file "  # how the provenance origin of every run a search makes begins
SELECTION_TEST_RUN = ", a selection's test run"  # and how a selection's test run's ends
SEARCH_KEYS = {"cells", "space", "trials", "startup_trials", "seeds", "validation_fraction",
               "test_seeds", "import"}


@dataclass(frozen=True)
class Dimension:
    """One searched setting: log-uniform on ``low..high``, or one of ``choices``."""

    name: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def distribution(self):
        import optuna

        if self.choices:
            return optuna.distributions.CategoricalDistribution(self.choices)
        return optuna.distributions.FloatDistribution(self.low, self.high, log=True)


@dataclass(frozen=True)
class Search:
    """A search file, read and checked."""

    cells: list[dict]  # each cell's fixed settings, resolved once to check them
    space: tuple[Dimension, ...]
    trials: int
    startup_trials: int
    seeds: tuple[int, ...]
    validation_fraction: float
    test_seeds: tuple[int, ...]
    imports: tuple[str, ...] = ()
    import_folders: tuple[str, ...] = ()
    source: str = ""

    def dimensions(self, cell: dict) -> list[Dimension]:
        """The settings searched in ``cell``: those that can matter there."""
        method = declaration(cell["model"])
        own = {setting.name for setting in method.settings}
        found = []
        for dimension in self.space:
            if dimension.name == "gms_mask_value" and not cell.get("gms"):
                continue
            if dimension.name == "minibatch_size" and not method.uses_buffer:
                continue
            if dimension.name in own or dimension.name in ("lr", "minibatch_size",
                                                           "gms_mask_value"):
                found.append(dimension)
        return found


def cell_key(cell: dict) -> str:
    """A cell's name: its fixed settings, sorted (the Optuna study's name)."""
    return json.dumps(cell, sort_keys=True, default=str)


def cell_seed(cell: dict) -> int:
    return int(hashlib.sha256(cell_key(cell).encode()).hexdigest()[:8], 16)


def read_search(path: str | Path, imports: tuple[str, ...] = ()) -> Search:
    """A search file (see the module's docstring), checked: any problem is one SweepError
    naming it. ``imports``: modules to import first, as the file's ``import:``."""
    path = Path(path)
    document, imported, folders = load_document(path, imports, kind="search")
    if not isinstance(document, dict):
        raise SweepError(f"{path}: a search file is a mapping of {', '.join(sorted(SEARCH_KEYS))}")
    unknown = sorted(set(document) - SEARCH_KEYS)
    if unknown:
        raise SweepError(f"{path}: unknown key {unknown[0]!r} (a search file has "
                         f"{', '.join(sorted(SEARCH_KEYS))})")
    for key in ("cells", "space", "trials", "seeds", "test_seeds"):
        if key not in document:
            raise SweepError(f"{path}: {key!r} is missing")
    cells_grids = document["cells"]
    if not isinstance(cells_grids, list) or not cells_grids:
        raise SweepError(f"{path}: 'cells' must be a non-empty list of grids")
    cells = []
    for grid in cells_grids:
        if not isinstance(grid, dict):
            raise SweepError(f"{path}: each of 'cells' must be a mapping of run settings")
        cells += _cells_of(path, grid)
    space = tuple(_dimension(path, name, value) for name, value in
                  _mapping(path, "space", document["space"]).items())
    search = Search(
        cells=cells, space=space, trials=_count(path, "trials", document["trials"]),
        startup_trials=_count(path, "startup_trials", document.get("startup_trials", 8), 0),
        seeds=_seeds(path, "seeds", document["seeds"]),
        validation_fraction=document.get("validation_fraction", 0.1),
        test_seeds=_seeds(path, "test_seeds", document["test_seeds"]),
        imports=tuple(imported), import_folders=tuple(folders), source=str(path))
    model = all_settings()["model"]
    for cell in search.cells:  # every trial's settings must resolve: try the space's ends
        try:
            model.check(cell.get("model", model.default))
        except ConfigError as error:
            raise SweepError(f"{path}: cell {cell_key(cell)}: {error}") from None
        cell.setdefault("model", model.default)
        for dimension in search.dimensions(cell):
            for value in (dimension.choices or (dimension.low, dimension.high)):
                _trial_settings(path, search, cell, {dimension.name: value}, search.seeds[0])
    return search


def _cells_of(path: Path, grid: dict) -> list[dict]:
    """The combinations of one grid, with dashes as underscores (each resolved in
    :func:`read_search` with the space's values)."""
    import itertools

    axes = {str(key).replace("-", "_"): value if isinstance(value, list) else [value]
            for key, value in grid.items()}
    if "seed" in axes or "validation_fraction" in axes:
        raise SweepError(f"{path}: a cell takes no seed or validation_fraction: the search "
                         "file's 'seeds' and 'validation_fraction' set them")
    return [dict(zip(axes, combination, strict=True))
            for combination in itertools.product(*axes.values())]


def _mapping(path, key, value) -> dict:
    if not isinstance(value, dict) or not value:
        raise SweepError(f"{path}: {key!r} must be a non-empty mapping, got {describe(value)}")
    return value


def _dimension(path, name, value) -> Dimension:
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("log",
                                                                                "choice"):
        raise SweepError(f"{path}: space {name!r} must be {{log: [low, high]}} or "
                         f"{{choice: [values]}}, got {describe(value)}")
    kind, bounds = next(iter(value.items()))
    if kind == "choice":
        if not isinstance(bounds, list) or not bounds:
            raise SweepError(f"{path}: space {name!r}: choice needs a list of values")
        return Dimension(name, choices=tuple(bounds))
    if (not isinstance(bounds, list) or len(bounds) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in bounds)
            or bounds[0] >= bounds[1]):
        raise SweepError(f"{path}: space {name!r}: log needs [low, high] with 0 < low < high")
    return Dimension(name, float(bounds[0]), float(bounds[1]))


def _count(path, key, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SweepError(f"{path}: {key!r} must be an integer >= {minimum}, got "
                         f"{describe(value)}")
    return value


def _seeds(path, key, value) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise SweepError(f"{path}: {key!r} must be a list of seeds (integers >= 0)")
    return tuple(value)


def _trial_settings(path, search: Search, cell: dict, params: dict, seed: int):
    settings = {**cell, **params, "seed": seed,
                "validation_fraction": search.validation_fraction}
    try:
        return resolve(settings, origin=f"{ORIGIN}{Path(path).name}")
    except ConfigError as error:
        raise SweepError(f"{path}: cell {cell_key(cell)}: {error}") from None


@dataclass
class CellOutcome:
    """A cell's search so far: its trials (params, value or None for a failed trial)."""

    cell: dict
    trials: list[tuple[dict, float | None]] = field(default_factory=list)

    @property
    def selected(self) -> tuple[dict, float] | None:
        """The completed trial of the highest value (the earliest on ties)."""
        done = [(params, value) for params, value in self.trials if value is not None]
        return max(done, key=lambda item: item[1]) if done else None


def run_search(search: Search, db: str | Path, journal: str | Path, workers: int = 2,
               progress: bool = True, data_root: str | None = None,
               test: bool = True) -> list[CellOutcome]:
    """Run every cell's search up to its trials (cells on ``workers`` processes, each
    cell's trials one after another, the two cells of a pair one after the other); with
    ``test``, as soon as both cells of a pair (cells that differ only in ``gms``) are
    fully searched, their selections' test runs, together in one worker; returns each
    cell's trials."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from tqdm import tqdm

    ResultsStore(db, create=True).close()
    cells = sorted(search.cells, key=lambda cell: (pair_key(cell), bool(cell.get("gms"))))
    outcomes: dict[str, CellOutcome] = {}
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(cells)))) as pool, \
            tqdm(total=len(cells), disable=not progress, unit="cell", desc="search") as bar:
        pending = {pool.submit(_search_cell, search, cell, str(db), str(journal), data_root):
                   ("search", cell) for cell in cells}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                kind, cell = pending.pop(future)
                try:
                    result = future.result()
                except RunCrashed:  # stop: what is running finishes, nothing new starts
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise
                if kind != "search":
                    continue
                outcomes[cell_key(cell)] = result
                bar.update(1)
                partner = {**cell, "gms": not cell.get("gms")}
                if test and cell_key(partner) in outcomes:
                    configs = [config for side in (cell, partner) for config in
                               selection_configs(search, outcomes[cell_key(side)])]
                    if len(configs) == 2 * len(search.test_seeds):  # both searches complete
                        pending[pool.submit(_test_runs, configs, str(db), data_root)] = (
                            "test", cell)
    return [outcomes[cell_key(cell)] for cell in search.cells]


def is_trial_run(result: dict) -> bool:
    """A run of a search's trial: on a validation split, made by a search file; the
    tuned-against-tuned table reports what it selected."""
    origin = result.get("provenance", {}).get("origin", "")
    return bool(result["config"].get("validation_fraction")) and origin.startswith(ORIGIN)


def is_selection_test_run(result: dict) -> bool:
    """A test run of a search's selection: reported in the tuned-against-tuned table, where
    its pair is, not among the cells of a grid."""
    origin = result.get("provenance", {}).get("origin", "")
    return origin.startswith(ORIGIN) and origin.endswith(SELECTION_TEST_RUN)


def pair_key(cell: dict) -> str:
    """What the two cells of a pair share: every setting but ``gms``."""
    return cell_key({name: value for name, value in cell.items() if name != "gms"})


def _test_runs(configs: list, db: str, data_root: str | None) -> int:
    """Run (in a worker) the test runs of a pair's selections not yet in the database, one
    after another on this machine; returns how many ran."""
    import torch

    torch.set_num_threads(1)
    store = ResultsStore(db, create=True)
    ran = 0
    try:
        for config in configs:
            found = store.outcome(config.hash)
            if found is None or crashed(found):
                _record_run(store, config, data_root, trial=False)
                ran += 1
    finally:
        store.close()
    return ran


def _search_cell(search: Search, cell: dict, db: str, journal: str,
                 data_root: str | None) -> CellOutcome:
    """One cell's trials, in a worker process."""
    import optuna
    import torch
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    from ..plugins import import_modules

    torch.set_num_threads(1)  # one core per worker, from its first op on
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import_modules(search.imports, search=search.import_folders)
    storage = JournalStorage(JournalFileBackend(journal))
    sampler = optuna.samplers.TPESampler(seed=cell_seed(cell), multivariate=True,
                                         n_startup_trials=search.startup_trials)
    study = optuna.create_study(study_name=cell_key(cell), storage=storage, sampler=sampler,
                                direction="maximize", load_if_exists=True)
    dimensions = {d.name: d.distribution() for d in search.dimensions(cell)}
    store = ResultsStore(db, create=True)
    try:
        failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if any(not _diverged(trial.params, search, cell, store) for trial in failed):
            # a trial failed by a crash (recorded before RunCrashed): the cell's search
            # starts again from its seed, as if the crash had not happened; the journal
            # keeps the deleted study's trials
            optuna.delete_study(study_name=cell_key(cell), storage=storage)
            sampler = optuna.samplers.TPESampler(seed=cell_seed(cell), multivariate=True,
                                                 n_startup_trials=search.startup_trials)
            study = optuna.create_study(study_name=cell_key(cell), storage=storage,
                                        sampler=sampler, direction="maximize")
        for stale in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            _score(study, stale.number, stale.params, search, cell, store, data_root)
        while len(study.get_trials(deepcopy=False, states=(
                TrialState.COMPLETE, TrialState.FAIL))) < search.trials:
            trial = study.ask(dimensions)
            _score(study, trial.number, trial.params, search, cell, store, data_root)
    finally:
        store.close()
    outcome = CellOutcome(cell)
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.COMPLETE, TrialState.FAIL):
            outcome.trials.append((dict(trial.params),
                                   trial.value if trial.state == TrialState.COMPLETE else None))
    return outcome


def _diverged(params: dict, search: Search, cell: dict, store) -> bool:
    """Whether a failed trial failed as the plan means it: one of its runs diverged."""
    for seed in search.seeds:
        found = store.outcome(_trial_settings(search.source, search, cell, _plain(params),
                                              seed).hash)
        if found is not None and found[0] == "failed" and not crashed(found):
            return True
    return False


def read_outcomes(search: Search, journal: str | Path) -> list[CellOutcome]:
    """Each cell's trials as the journal holds them (no run, no new trial): for reports
    while a search is under way or after it."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState

    outcomes = [CellOutcome(cell) for cell in search.cells]
    if not Path(journal).is_file():
        return outcomes
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(journal)))
    names = {summary.study_name for summary in optuna.get_all_study_summaries(storage)}
    for outcome in outcomes:
        if cell_key(outcome.cell) not in names:
            continue
        study = optuna.load_study(study_name=cell_key(outcome.cell), storage=storage)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                              TrialState.FAIL)):
            outcome.trials.append((dict(trial.params), trial.value
                                   if trial.state == TrialState.COMPLETE else None))
    return outcomes


def selection_configs(search: Search, outcome: CellOutcome):
    """The test runs of a fully searched cell's selection, resolved (one per test seed);
    [] for a cell whose search is not complete."""
    chosen = outcome.selected
    if len(outcome.trials) < search.trials or chosen is None:
        return []
    return [resolve({**outcome.cell, **_plain(chosen[0]), "seed": seed},
                    origin=f"{ORIGIN}{Path(search.source).name}{SELECTION_TEST_RUN}")
            for seed in search.test_seeds]


def _score(study, number: int, params: dict, search: Search, cell: dict, store,
           data_root) -> None:
    """Run (or find in the database) the trial's runs and tell Optuna their mean."""
    from optuna.trial import TrialState

    values = []
    for seed in search.seeds:
        config = _trial_settings(search.source, search, cell, _plain(params), seed)
        found = store.outcome(config.hash)
        if found is None or crashed(found):  # a crash recorded before this rule: run again
            found = _record_run(store, config, data_root)
        if found[0] != "done":
            study.tell(number, state=TrialState.FAIL)
            return
        values.append(found[1]["metrics"]["class_il"]["average_accuracy"])
    study.tell(number, statistics.fmean(values))


class RunCrashed(RuntimeError):
    """A search's run raised something other than a divergence: a defect to fix, not an
    outcome of the trial (docs/study/plan.md section 2: a failed trial is one with a
    diverged run); nothing is recorded for it, and the trial stays open."""


def crashed(outcome: tuple) -> bool:
    """Whether a stored (status, result, error) is a failure other than a divergence (as
    searches before :class:`RunCrashed` recorded them)."""
    return outcome[0] == "failed" and not (outcome[2] or "").startswith("DivergenceError")


def _record_run(store, config, data_root, trial: bool = True) -> tuple:
    """Run ``config`` and record it in ``store`` as a sweep worker would: the outcome
    (status, result, error); a diverged trial run's failure is marked as such, and any
    other exception is raised as :class:`RunCrashed`, unrecorded."""
    from ..core.results import DivergenceError
    from .execution import RunOptions, execute

    try:
        result = execute(config, options=RunOptions(
            data_root=data_root, download=False, progress=False, threads=1)).to_dict()
    except Exception as error:
        where = traceback.extract_tb(error.__traceback__)[-1]
        message = (f"{type(error).__name__}: {error} "
                   f"({Path(where.filename).name}:{where.lineno})")
        if not isinstance(error, DivergenceError):  # a defect, not an outcome
            raise RunCrashed(f"a {'trial' if trial else 'test'} run ({config.model} on "
                             f"{config.dataset}, buffer {config.buffer_size}, seed "
                             f"{config.seed}, config {config.hash}) crashed: {message}; "
                             "nothing was recorded for it: fix the cause and run the "
                             "search again (it resumes)") from None
        message += SEARCH_TRIAL_FAILURE if trial else ""
        store.record(config.hash, config.to_dict(), error=message)  # as a sweep worker would
        return "failed", None, message
    store.record(config.hash, config.to_dict(), result=result)
    return "done", result, None


def _plain(params: dict) -> dict:
    """Optuna's values as run settings: a mask value of -inf stays -inf."""
    return {name: (-math.inf if value == "-inf" else value) for name, value in params.items()}


def selected_sweep(search: Search, outcomes: list[CellOutcome]) -> str:
    """A sweep file (YAML) running each fully searched cell's selection on the test set
    with the test seeds; cells whose search is not complete are listed as comments."""
    import yaml

    grids, pending = [], []
    for outcome in outcomes:
        chosen = outcome.selected
        if len(outcome.trials) < search.trials or chosen is None:
            pending.append(cell_key(outcome.cell))
            continue
        grids.append({**outcome.cell, **_plain(chosen[0]), "seed": list(search.test_seeds)})
    lines = [f"# The test runs of {search.source}'s selections: each cell's trial of the",
             "# highest mean validation Class-IL, on the test set with the test seeds.",
             *(f"# not yet fully searched: {key}" for key in pending)]
    body = yaml.safe_dump({"grids": grids}, sort_keys=False, width=100) if grids else ""
    return "\n".join(lines) + "\n" + body


