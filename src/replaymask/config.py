"""Run configuration: plain data, resolved against the DER paper's best arguments and
validated once, at the edge."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from .benchmarks import BENCHMARKS

METHODS = ("sgd", "joint", "er", "der", "derpp", "er_ace")
BUFFERLESS_METHODS = ("sgd", "joint")
LOGIT_REPLAY_METHODS = ("der", "derpp")


class ConfigError(ValueError):
    """A user-supplied setting is invalid; the message names it."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run. ``None`` means "the best-args default"."""

    model: str = "derpp"
    dataset: str = "seq-mnist"
    buffer_size: int = 200
    seed: int = 0
    n_epochs: int | None = None
    batch_size: int | None = None
    minibatch_size: int | None = None
    lr: float | None = None
    alpha: float | None = None
    beta: float | None = None
    gms: bool = False
    gms_mask_value: float | str = float("-inf")
    gms_on_buffer: bool = False
    der_logits: str = "stream"  # "stream": pre-step forward (Mammoth); "post-step": authors' fork
    class_order_seed: int | None = None
    device: str = "cpu"

    def to_dict(self) -> dict:
        """JSON-safe: an infinite mask value is written as the string "-inf"."""
        data = asdict(self)
        if isinstance(self.gms_mask_value, float) and math.isinf(self.gms_mask_value):
            data["gms_mask_value"] = "-inf"
        return data


# The DER paper's best arguments (Buzzega et al. 2020), per buffer row:
# lr, replay minibatch, alpha, beta. Seq-FMNIST has none of its own: it uses Seq-MNIST's.
BEST_ARGS = {
    "seq-mnist": {
        "er": {200: (0.01, 10, None, None), 500: (0.1, 10, None, None),
               5120: (0.1, 10, None, None)},
        "der": {200: (0.03, 10, 0.2, None), 500: (0.03, 128, 1.0, None),
                5120: (0.1, 128, 0.5, None)},
        "derpp": {200: (0.03, 128, 0.2, 1.0), 500: (0.03, 10, 1.0, 0.5),
                  5120: (0.1, 64, 0.2, 0.5)},
    },
}
# Not in the DER paper's tables: Mammoth's Seq-MNIST settings (lr .03, replay = batch).
OTHER_METHOD_LR = {"sgd": 0.03, "joint": 0.03, "er_ace": 0.03}


def resolve(config: RunConfig) -> tuple[RunConfig, str]:
    """Validate ``config`` and fill its ``None`` fields; returns it and a note on the source."""
    validate(config)
    spec = BENCHMARKS[config.dataset]
    buffer_size = 0 if config.model in BUFFERLESS_METHODS else config.buffer_size
    table_dataset = config.dataset if config.dataset in BEST_ARGS else "seq-mnist"
    batch_size = config.batch_size or spec.batch_size
    if config.model in BEST_ARGS[table_dataset]:
        rows = BEST_ARGS[table_dataset][config.model]
        row = min(rows, key=lambda size: (abs(size - buffer_size), size))
        lr, minibatch, alpha, beta = rows[row]
        note = f"DER paper best args for {table_dataset}, {config.model}, buffer {row}"
        if row != buffer_size:
            note += f" (nearest row to buffer {buffer_size})"
        if table_dataset != config.dataset:
            note += f" (no row for {config.dataset})"
    else:
        lr, minibatch, alpha, beta = OTHER_METHOD_LR[config.model], batch_size, None, None
        note = f"Mammoth defaults for {config.model} on seq-mnist (lr {lr})"
    resolved = replace(
        config,
        # settings that cannot matter are normalised, so equal runs have equal configs
        gms_mask_value=config.gms_mask_value if config.gms else float("-inf"),
        gms_on_buffer=config.gms_on_buffer and config.gms,
        der_logits=config.der_logits if config.model in LOGIT_REPLAY_METHODS else "stream",
        buffer_size=buffer_size,
        n_epochs=config.n_epochs or spec.n_epochs,
        batch_size=batch_size,
        minibatch_size=config.minibatch_size or minibatch,
        lr=config.lr if config.lr is not None else lr,
        alpha=config.alpha if config.alpha is not None else alpha,
        beta=config.beta if config.beta is not None else beta,
    )
    overridden = [k for k in ("lr", "minibatch_size", "alpha", "beta", "n_epochs", "batch_size")
                  if getattr(config, k) is not None]
    if overridden:
        note += "; overridden: " + ", ".join(overridden)
    return resolved, note


def validate(config: RunConfig) -> None:
    if config.model not in METHODS:
        raise ConfigError(f"unknown model {config.model!r} (choose from {', '.join(METHODS)})")
    if config.dataset not in BENCHMARKS:
        raise ConfigError(f"unknown dataset {config.dataset!r} "
                          f"(choose from {', '.join(BENCHMARKS)})")
    _require(_is_int(config.buffer_size) and config.buffer_size >= 0,
             f"--buffer-size must be an integer >= 0, got {config.buffer_size}")
    _require(_is_int(config.seed) and config.seed >= 0,
             f"--seed must be an integer >= 0, got {config.seed}")
    for name in ("n_epochs", "batch_size", "minibatch_size"):
        value = getattr(config, name)
        _require(value is None or (_is_int(value) and value >= 1),
                 f"--{name.replace('_', '-')} must be an integer >= 1, got {value}")
    _require(config.lr is None or (_is_finite(config.lr) and config.lr > 0),
             f"--lr must be a finite number > 0, got {config.lr}")
    for name in ("alpha", "beta"):
        value = getattr(config, name)
        _require(value is None or (_is_finite(value) and value >= 0),
                 f"--{name} must be a finite number >= 0, got {value}")
    check_mask_value(config.gms_mask_value)
    _require(config.der_logits in ("stream", "post-step"),
             f"--der-logits must be 'stream' or 'post-step', got {config.der_logits!r}")
    _require(config.class_order_seed is None
             or (_is_int(config.class_order_seed) and config.class_order_seed >= 0),
             f"--class-order-seed must be an integer >= 0, got {config.class_order_seed}")
    _require(config.device == "cpu" or config.device.startswith("cuda"),
             f"--device must be 'cpu' or 'cuda[:N]', got {config.device!r}")


def check_mask_value(value) -> None:
    if value == "detach":
        return
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    _require(is_number and not math.isnan(value) and value != math.inf,
             f"--gms-mask-value must be a number, -inf or 'detach' (not NaN or +inf), got {value}")


def parse_mask_value(text: str) -> float | str:
    """Parse the command line's mask value: a float, "-inf" or "detach"."""
    if text.strip().lower() == "detach":
        return "detach"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"--gms-mask-value must be a number, -inf or 'detach', got {text!r}") from None
    check_mask_value(value)
    return value


def run_name(config: RunConfig) -> str:
    """A readable, filesystem-safe identifier of a resolved run."""
    parts = [config.model, config.dataset, f"buf{config.buffer_size}", f"seed{config.seed}"]
    if config.gms:
        mask = config.to_dict()["gms_mask_value"]
        parts.append(f"gms{mask}" + ("-onbuf" if config.gms_on_buffer else ""))
    return "_".join(str(p) for p in parts)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
