"""Recomputing the provenance stored with finished runs, from their stored configurations.

Runs recorded before configurations were resolved once carry a wrong
``hyperparameter_source``: their sweep worker resolved the already resolved
configuration again, so every value looked set by the user ("overridden: lr,
minibatch_size, n_epochs, batch_size"). The stored configurations (and their hashes) are
right; only the provenance is recomputed:

* from the sweep file that made the runs, where given: a run gets the provenance of the
  grid combination that resolves to its hash (exactly what the file set);
* otherwise from the configuration alone: the model, the dataset and the fewest other
  settings that resolve to the same configuration, i.e. every value that the defaults,
  the protocol or the best arguments would not give is taken as set.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import resolve
from ..core.run_config import RunConfig
from .store import ResultsStore
from .sweep import read_sweep


@dataclass
class ProvenanceFix:
    from_sweep: int = 0
    inferred: int = 0
    unchanged: int = 0


def minimal_request(stored: dict) -> RunConfig:
    """The configuration ``stored`` resolved from the fewest settings that give it."""
    target = resolve(stored)
    request = dict(stored)
    for key in [k for k in request if k not in ("model", "dataset")]:  # a run's identity
        trial = {k: v for k, v in request.items() if k != key}
        if resolve(trial).hash == target.hash:
            request = trial
    return resolve(request, origin="inferred from the stored configuration")


def recompute_provenance(db: str | Path, sweep_files: list[str | Path] = (),
                         dry_run: bool = False) -> ProvenanceFix:
    """Rewrite the provenance of every finished run in ``db``; the configurations and
    their hashes are checked to stay as they are."""
    known: dict[str, RunConfig] = {}
    for sweep_file in sweep_files:
        for config in read_sweep(sweep_file).configs:
            known.setdefault(config.hash, config)
    fix = ProvenanceFix()
    store = ResultsStore(db, create=False)
    try:
        for row in store.runs("done"):
            config = known.get(row["config_hash"]) or minimal_request(row["config"])
            if config.hash != row["config_hash"] or config.to_dict() != row["config"]:
                raise ValueError(f"run {row['config_hash']}: its configuration resolves to "
                                 f"{config.hash}; nothing was changed for it")
            result = dict(row["result"])
            new = {"hyperparameter_source": config.provenance.summary(),
                   "provenance": config.provenance.to_dict()}
            if all(result.get(key) == value for key, value in new.items()):
                fix.unchanged += 1
                continue
            if row["config_hash"] in known:
                fix.from_sweep += 1
            else:
                fix.inferred += 1
            if not dry_run:
                store.replace_result(row["config_hash"], {**result, **new})
    finally:
        store.close()
    return fix
