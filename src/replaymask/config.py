"""Run configuration: plain data, resolved against the DER paper's best arguments and
validated once, at the edge."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from .benchmarks import BENCHMARKS

METHODS = ("sgd", "joint", "er", "der", "derpp", "er_ace", "xder")
BUFFERLESS_METHODS = ("sgd", "joint")
LOGIT_REPLAY_METHODS = ("der", "derpp")
PRECISIONS = ("fp32", "bf16")
XDER_FIELDS = ("gamma", "lambd", "constr_eta", "constr_margin", "simclr_temp",
               "simclr_batch_size", "simclr_num_aug", "past_constraint")


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
    # Added with the vision benchmarks. to_dict() leaves them out at their "off" values, so
    # that the identifiers (hashes) of earlier runs stay valid.
    lr_milestones: tuple[int, ...] | None = None  # epochs of each task where lr drops x0.1
    precision: str | None = None  # "fp32" | "bf16" (autocast); None: bf16 on CUDA, else fp32
    channels_last: bool | None = None  # None: on for CUDA convolutional backbones
    compile: bool = False  # torch.compile the backbone
    gamma: float | None = None  # X-DER: rescaling of transplanted future-head logits
    lambd: float | None = None  # X-DER: weight of the future heads' consistency loss
    constr_eta: float | None = None  # X-DER: weight of the margin constraints
    constr_margin: float | None = None  # X-DER: their margin
    simclr_temp: float | None = None  # X-DER: SupCon temperature
    simclr_batch_size: int | None = None  # X-DER: buffer items added to the SupCon batch
    simclr_num_aug: int | None = None  # X-DER: augmented views per SupCon item
    past_constraint: bool | None = None  # X-DER: also the past-heads constraint

    def to_dict(self) -> dict:
        """JSON-safe: an infinite mask value is written as the string "-inf"."""
        data = asdict(self)
        if isinstance(self.gms_mask_value, float) and math.isinf(self.gms_mask_value):
            data["gms_mask_value"] = "-inf"
        for name, off in LATER_FIELDS.items():
            if data[name] in off:
                del data[name]
        if "lr_milestones" in data:
            data["lr_milestones"] = list(data["lr_milestones"])
        return data


LATER_FIELDS = {name: (None,) for name in XDER_FIELDS} | {
    "lr_milestones": (None, ()), "precision": (None, "fp32"), "channels_last": (None, False),
    "compile": (False,)}


def _row(lr, minibatch_size, alpha=None, beta=None, **others) -> dict:
    return dict(lr=lr, minibatch_size=minibatch_size, alpha=alpha, beta=beta, **others)


# The DER paper's best arguments (Buzzega et al. 2020) per buffer row, and for
# Seq-CIFAR-100 and X-DER those of Mammoth's best-args table. Seq-FMNIST has none of its
# own: it uses Seq-MNIST's.
BEST_ARGS = {
    "seq-mnist": {
        "er": {200: _row(0.01, 10), 500: _row(0.1, 10), 5120: _row(0.1, 10)},
        "der": {200: _row(0.03, 10, 0.2), 500: _row(0.03, 128, 1.0), 5120: _row(0.1, 128, 0.5)},
        "derpp": {200: _row(0.03, 128, 0.2, 1.0), 500: _row(0.03, 10, 1.0, 0.5),
                  5120: _row(0.1, 64, 0.2, 0.5)},
    },
    "seq-cifar10": {
        "er": {200: _row(0.1, 32), 500: _row(0.1, 32), 5120: _row(0.1, 32)},
        "der": {200: _row(0.03, 32, 0.3), 500: _row(0.03, 32, 0.3), 5120: _row(0.03, 32, 0.3)},
        "derpp": {200: _row(0.03, 32, 0.1, 0.5), 500: _row(0.03, 32, 0.2, 0.5),
                  5120: _row(0.03, 32, 0.1, 1.0)},
    },
    "seq-tinyimg": {
        "er": {200: _row(0.1, 32), 500: _row(0.03, 32), 5120: _row(0.1, 32)},
        "der": {200: _row(0.03, 32, 0.1), 500: _row(0.03, 32, 0.1), 5120: _row(0.03, 32, 0.1)},
        "derpp": {200: _row(0.03, 32, 0.1, 1.0), 500: _row(0.03, 32, 0.2, 0.5),
                  5120: _row(0.03, 32, 0.1, 0.5)},
    },
    "seq-cifar100": {
        "er": {500: _row(0.1, 32), 2000: _row(0.1, 32)},
        "der": {500: _row(0.03, 32, 0.3), 2000: _row(0.03, 32, 0.3)},
        "derpp": {500: _row(0.03, 32, 0.1, 0.5), 2000: _row(0.03, 32, 0.1, 0.5)},
        "er_ace": {500: _row(0.03, 32), 2000: _row(0.03, 32)},
        "xder": {
            500: _row(0.03, 32, 0.3, 0.8, gamma=0.85, lambd=0.05, constr_eta=0.001,
                      constr_margin=0.7, simclr_temp=5.0, simclr_batch_size=64,
                      simclr_num_aug=2, past_constraint=False),
            2000: _row(0.03, 32, 0.6, 0.9, gamma=0.85, lambd=0.05, constr_eta=0.01,
                       constr_margin=0.2, simclr_temp=5.0, simclr_batch_size=64,
                       simclr_num_aug=2, past_constraint=False),
        },
    },
}
# X-DER's published best arguments exist for Seq-CIFAR-100 only; other benchmarks use them.
XDER_TABLE = "seq-cifar100"
# Not in the tables: Mammoth's settings (replay minibatch = batch size).
OTHER_METHOD_LR = {
    "seq-mnist": {"sgd": 0.03, "joint": 0.03, "er_ace": 0.03},
    "seq-cifar10": {"sgd": 0.1, "joint": 0.03, "er_ace": 0.03},
    "seq-tinyimg": {"sgd": 0.03, "joint": 0.03, "er_ace": 0.03},
    "seq-cifar100": {"sgd": 0.03, "joint": 0.03, "er_ace": 0.03},
}


def _hyperparameter_row(config: RunConfig, buffer_size: int, batch_size: int
                        ) -> tuple[dict, str]:
    """The best-args row for ``config`` (nearest buffer size) and a note saying which."""
    table = config.dataset if config.dataset in BEST_ARGS else "seq-mnist"
    if config.model == "xder" and config.model not in BEST_ARGS[table]:
        table = XDER_TABLE
    rows = BEST_ARGS[table].get(config.model)
    if rows is None:
        lr = OTHER_METHOD_LR[table][config.model]
        return _row(lr, batch_size), f"Mammoth defaults for {config.model} on {table} (lr {lr})"
    size = min(rows, key=lambda row: (abs(row - buffer_size), row))
    source = "Mammoth" if table == "seq-cifar100" else "DER paper"
    note = f"{source} best args for {table}, {config.model}, buffer {size}"
    if size != buffer_size:
        note += f" (nearest row to buffer {buffer_size})"
    if table != config.dataset:
        note += f" (no row for {config.dataset})"
    return rows[size], note


def resolve(config: RunConfig) -> tuple[RunConfig, str]:
    """Validate ``config`` and fill its ``None`` fields; returns it and a note on the source."""
    validate(config)
    spec = BENCHMARKS[config.dataset]
    buffer_size = 0 if config.model in BUFFERLESS_METHODS else config.buffer_size
    batch_size = config.batch_size or spec.batch_size
    row, note = _hyperparameter_row(config, buffer_size, batch_size)

    def pick(name):  # the user's value, else the row's
        value = getattr(config, name)
        return value if value is not None else row.get(name)

    cuda = config.device.startswith("cuda")
    xder = config.model == "xder"
    resolved = replace(
        config,
        # settings that cannot matter are normalised, so equal runs have equal configs
        gms_mask_value=config.gms_mask_value if config.gms else float("-inf"),
        gms_on_buffer=config.gms_on_buffer and config.gms,
        der_logits=config.der_logits if config.model in LOGIT_REPLAY_METHODS else "stream",
        buffer_size=buffer_size,
        n_epochs=config.n_epochs or spec.n_epochs,
        batch_size=batch_size,
        minibatch_size=pick("minibatch_size"),
        lr=pick("lr"),
        alpha=pick("alpha"),
        beta=pick("beta"),
        lr_milestones=tuple(config.lr_milestones if config.lr_milestones is not None
                            else spec.lr_milestones),
        precision=config.precision or ("bf16" if cuda else "fp32"),
        channels_last=(config.channels_last if config.channels_last is not None
                       else cuda and spec.backbone == "resnet18"),
        **{name: pick(name) if xder else None for name in XDER_FIELDS},
    )
    overridden = [k for k in ("lr", "minibatch_size", "alpha", "beta", "n_epochs", "batch_size",
                              "lr_milestones", *XDER_FIELDS)
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
    _require(config.lr_milestones is None
             or (isinstance(config.lr_milestones, (list, tuple))
                 and all(_is_int(m) and m >= 1 for m in config.lr_milestones)),
             f"--lr-milestones must be integers >= 1, got {config.lr_milestones}")
    _require(config.precision is None or config.precision in PRECISIONS,
             f"--precision must be one of {', '.join(PRECISIONS)}, got {config.precision!r}")
    for name in ("channels_last", "compile", "past_constraint", "gms", "gms_on_buffer"):
        value = getattr(config, name)
        _require(value is None or isinstance(value, bool),
                 f"--{name.replace('_', '-')} must be true or false, got {value!r}")
    for name in ("gamma", "lambd", "constr_eta", "constr_margin"):
        value = getattr(config, name)
        _require(value is None or (_is_finite(value) and value >= 0),
                 f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    _require(config.simclr_temp is None or (_is_finite(config.simclr_temp)
                                            and config.simclr_temp > 0),
             f"--simclr-temp must be a finite number > 0, got {config.simclr_temp}")
    for name in ("simclr_batch_size", "simclr_num_aug"):
        value = getattr(config, name)
        minimum = 2 if name == "simclr_num_aug" else 0
        _require(value is None or (_is_int(value) and value >= minimum),
                 f"--{name.replace('_', '-')} must be an integer >= {minimum}, got {value}")
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
