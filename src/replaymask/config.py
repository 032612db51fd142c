"""Run configuration: plain data, resolved against the DER paper's best arguments and
validated once, at the edge."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, replace

from .data.benchmarks import BENCHMARKS

METHODS = ("sgd", "joint", "er", "der", "derpp", "er_ace", "xder")
BUFFERLESS_METHODS = ("sgd", "joint")
LOGIT_REPLAY_METHODS = ("der", "derpp")
PRECISIONS = ("fp32", "bf16")
XDER_FIELDS = ("gamma", "lambd", "constr_eta", "constr_margin", "simclr_temp",
               "simclr_batch_size", "simclr_num_aug", "past_constraint")
# Largest accepted seed + 1: numpy's global seed (``np.random.seed``) takes 32 bits.
SEED_LIMIT = 2**32
# Largest accepted count (buffer size, epochs, batch sizes, SupCon items and views): more
# than any benchmark's training set (TinyImageNet: 100,000 images), small enough that a
# typo such as an extra run of zeros fails here rather than as an allocation failure or an
# integer overflow deep inside torch, after the data were loaded.
MAX_COUNT = 10**6
FLOAT_FIELDS = ("lr", "alpha", "beta", "gamma", "lambd", "constr_eta", "constr_margin",
                "simclr_temp")
CUDA_DEVICE = re.compile(r"cuda(:(0|[1-9][0-9]{0,2}))?")  # torch's device index is 8 bits
MAX_CUDA_INDEX = 127


class ConfigError(ValueError):
    """A user-supplied setting is invalid; the message names it.

    The message is always one line: line breaks in it (from a value the user typed, a
    file name, an argparse message quoting the command line) are written as escapes.
    """

    def __init__(self, message: str = ""):
        super().__init__(one_line(str(message)))


def one_line(text: str) -> str:
    """``text`` with every character that ``str.splitlines`` breaks at escaped (``\\n``)."""
    return "".join(repr(c)[1:-1] if c in _LINE_BREAKS else c for c in text)


_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def describe(value, limit: int = 60) -> str:
    """A short, printable, one-line ``repr`` of a user-supplied value for an error message."""
    try:
        text = repr(value)
    except ValueError:  # an integer with more digits than Python will print
        text = f"<an integer of {value.bit_length()} bits>"
    text = one_line(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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
    # Numbers are stored as floats (an integer 1 and -0.0 as 1.0 and 0.0): configurations
    # that are equal have equal dictionaries, hence equal hashes in the results database.
    numbers = {name: getattr(resolved, name) for name in (*FLOAT_FIELDS, "gms_mask_value")}
    resolved = replace(resolved, **{name: _as_float(value) + 0.0  # -0.0 becomes 0.0
                                    for name, value in numbers.items()
                                    if _as_float(value) is not None})
    overridden = [k for k in ("lr", "minibatch_size", "alpha", "beta", "n_epochs", "batch_size",
                              "lr_milestones", *XDER_FIELDS)
                  if getattr(config, k) is not None]
    if overridden:
        note += "; overridden: " + ", ".join(overridden)
    return resolved, note


def validate(config: RunConfig) -> None:
    """Raise ConfigError naming the first invalid setting. Values of any type are checked
    (a sweep file can hold any YAML value), so no other exception escapes."""
    _require(_is_str(config.model) and config.model in METHODS,
             f"unknown model {describe(config.model)} (choose from {', '.join(METHODS)})")
    _require(_is_str(config.dataset) and config.dataset in BENCHMARKS,
             f"unknown dataset {describe(config.dataset)} (choose from {', '.join(BENCHMARKS)})")
    _require(_is_int(config.buffer_size) and 0 <= config.buffer_size <= MAX_COUNT,
             f"--buffer-size must be an integer >= 0 and <= {MAX_COUNT}, "
             f"got {describe(config.buffer_size)}")
    for name in ("seed", "class_order_seed"):
        value = getattr(config, name)
        _require((value is None and name == "class_order_seed")
                 or (_is_int(value) and 0 <= value < SEED_LIMIT),
                 f"--{name.replace('_', '-')} must be an integer >= 0 and < 2**32, "
                 f"got {describe(value)}")
    for name in ("n_epochs", "batch_size", "minibatch_size"):
        value = getattr(config, name)
        _require(value is None or (_is_int(value) and 1 <= value <= MAX_COUNT),
                 f"--{name.replace('_', '-')} must be an integer >= 1 and <= {MAX_COUNT}, "
                 f"got {describe(value)}")
    _require(config.lr is None or (_is_finite(config.lr) and config.lr > 0),
             f"--lr must be a finite number > 0, got {describe(config.lr)}")
    for name in ("alpha", "beta"):
        value = getattr(config, name)
        _require(value is None or (_is_finite(value) and value >= 0),
                 f"--{name} must be a finite number >= 0, got {describe(value)}")
    check_mask_value(config.gms_mask_value)
    _require(_is_str(config.der_logits) and config.der_logits in ("stream", "post-step"),
             f"--der-logits must be 'stream' or 'post-step', got {describe(config.der_logits)}")
    _require(config.lr_milestones is None
             or (isinstance(config.lr_milestones, (list, tuple))
                 and all(_is_int(m) and m >= 1 for m in config.lr_milestones)),
             f"--lr-milestones must be integers >= 1, got {describe(config.lr_milestones)}")
    _require(config.precision is None
             or (_is_str(config.precision) and config.precision in PRECISIONS),
             f"--precision must be one of {', '.join(PRECISIONS)}, "
             f"got {describe(config.precision)}")
    for name in ("channels_last", "compile", "past_constraint", "gms", "gms_on_buffer"):
        value = getattr(config, name)
        _require((value is None and name in ("channels_last", "past_constraint"))
                 or isinstance(value, bool),
                 f"--{name.replace('_', '-')} must be true or false, got {describe(value)}")
    for name in ("gamma", "lambd", "constr_eta", "constr_margin"):
        value = getattr(config, name)
        _require(value is None or (_is_finite(value) and value >= 0),
                 f"--{name.replace('_', '-')} must be a finite number >= 0, got {describe(value)}")
    _require(config.simclr_temp is None or (_is_finite(config.simclr_temp)
                                            and config.simclr_temp > 0),
             f"--simclr-temp must be a finite number > 0, got {describe(config.simclr_temp)}")
    for name in ("simclr_batch_size", "simclr_num_aug"):
        value = getattr(config, name)
        minimum = 2 if name == "simclr_num_aug" else 0
        _require(value is None or (_is_int(value) and minimum <= value <= MAX_COUNT),
                 f"--{name.replace('_', '-')} must be an integer >= {minimum} and "
                 f"<= {MAX_COUNT}, got {describe(value)}")
    device = config.device
    _require(_is_str(device) and (device == "cpu" or (
        CUDA_DEVICE.fullmatch(device) is not None
        and int(device.partition(":")[2] or 0) <= MAX_CUDA_INDEX)),
             f"--device must be 'cpu' or 'cuda[:N]' (N from 0 to {MAX_CUDA_INDEX}), "
             f"got {describe(device)}")


def check_mask_value(value) -> None:
    if _is_str(value) and value == "detach":
        return
    number = _as_float(value)
    _require(number is not None and not math.isnan(number) and number != math.inf,
             "--gms-mask-value must be a number, -inf or 'detach' (not NaN or +inf), "
             f"got {describe(value)}")


def parse_mask_value(text: str) -> float | str:
    """Parse the command line's mask value: a float, "-inf" or "detach"."""
    if text.strip().lower() == "detach":
        return "detach"
    try:
        value = float(text)
    except ValueError:
        raise ConfigError("--gms-mask-value must be a number, -inf or 'detach', "
                          f"got {describe(text)}") from None
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


def _is_str(value) -> bool:
    return isinstance(value, str)


def _as_float(value) -> float | None:
    """``value`` as a float if it is a real number (not a bool); an integer too large for a
    float is +-inf; None otherwise."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _is_finite(value) -> bool:
    number = _as_float(value)
    return number is not None and math.isfinite(number)
