"""What every method shares: the optimiser, the GMS-aware losses, the buffer hand-off, and
the hooks through which a method changes what the training loop does (see
:class:`ContinualMethod`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...data.protocols import TaskSplit
from ...errors import ConfigError
from ..buffer import ReservoirBuffer
from ..gms import GMSRule, gms_masked_logits, same_task_table
from ..run_config import RunConfig


@dataclass(frozen=True)
class TaskData:
    """The training data of a finished task, handed to :meth:`ContinualMethod.end_task`:
    raw inputs (as the buffer stores them; ``method.prepare`` or ``method.normalize``
    turns them into network input) and their labels, every sample of the tasks it trained
    on (:meth:`ContinualMethod.training_tasks`) in the order of its last epoch."""

    inputs: torch.Tensor
    labels: torch.Tensor


class PlainSGD:
    """SGD without momentum or weight decay, ``p <- p - lr * grad``.

    It has no state, so re-creating it at each task (the protocol) costs nothing; the
    update is one fused ``foreach`` call, which matters for the MLP's ~1 ms steps.
    """

    def __init__(self, params, lr: float):
        self.params = [p for p in params if p.requires_grad]
        self.lr = lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        with_grad = [p for p in self.params if p.grad is not None]
        torch._foreach_add_(with_grad, [p.grad for p in with_grad], alpha=-self.lr)


class ContinualMethod:
    """A learner: turns each stream batch (and replay batches) into one update.

    The training loop calls, for each task: ``begin_task(task)``; ``observe`` for every
    stream batch of the data of :meth:`training_tasks` (shuffled, each epoch);
    ``end_task(task, data)``; then evaluates through :meth:`predict`. Subclasses implement
    :meth:`observe` and override the other hooks where the method needs to:

    * :meth:`predict`: the class scores evaluation takes the argmax of (default: the
      network's logits; iCaRL: its nearest-mean classifier);
    * :meth:`training_tasks`: whose data a task's stream is (default: its own; Joint:
      every task so far), and :meth:`training_data`, what the stream is made of those
      tasks' data (iCaRL: joined with its memory);
    * :meth:`create_buffer`: the memory (default: reservoir sampling over the stream);
    * :meth:`begin_task`, :meth:`end_task` (with the task's data as :class:`TaskData`),
      :meth:`state_dict` and :meth:`load_state_dict` (what a checkpoint keeps).

    What the method may read: ``net``; ``prepare`` (raw stored inputs -> network input,
    the training transform: augmented where the benchmark augments, with fresh draws at
    each call, from ``generator``); ``normalize`` (the same without augmentation, as at
    test time) and ``mean``/``std``, the normalisation; ``layout`` (the benchmark's task
    sizes, offsets and class count) and ``class_to_task``; ``config``, and ``settings``,
    the method's own settings as its file declares them (``self.settings.alpha``);
    ``gms_rule``, which rows GMS masks.
    """

    def __init__(
        self,
        net: nn.Module,
        prepare: Callable[[torch.Tensor], torch.Tensor],
        class_to_task: torch.Tensor,
        config: RunConfig,
        normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.net = net
        self.prepare = prepare  # raw stored images -> network input (augmented if any)
        self.normalize = prepare if normalize is None else normalize  # not augmented
        # the benchmark's normalisation (per channel; None: inputs are not normalised)
        self.mean = getattr(self.normalize, "mean", None)
        self.std = getattr(self.normalize, "std", None)
        # whether the training augmentation mirrors images left-right (CIFAR's does)
        self.flips = bool(getattr(prepare, "flips", False))
        # whether ``prepare`` draws at random (a transform that does not say is assumed to):
        # where it does not, a method may prepare fixed inputs once
        self.augments = bool(getattr(prepare, "augments", True))
        # the training transform's random draws (None where it draws none: torch's own)
        self.generator: torch.Generator | None = getattr(prepare, "generator", None)
        self.class_to_task = class_to_task
        self.layout = TaskSplit(tuple(torch.bincount(class_to_task.cpu()).tolist()))
        self.live_by_class = same_task_table(class_to_task)  # GMS: live classes per label
        self.gms_rule = GMSRule(config.gms, config.gms_mask_value, config.gms_on_buffer)
        self.config = config
        self.settings = config.method_settings
        self.device = next(net.parameters()).device
        self.buffer = self.create_buffer()
        self.task = 0
        self.optimizer = PlainSGD(net.parameters(), config.lr)

    def require_features(self) -> None:
        """Refuse, in one line, a network without ``features(x)`` (the input of its
        classifier), for methods that work on features (iCaRL, HAL)."""
        if not callable(getattr(self.net, "features", None)):
            raise ConfigError(f"{self.config.model} needs a network with a features(x) method "
                              f"(the input of its classifier); {type(self.net).__name__} has "
                              "none")

    def create_buffer(self):
        """The method's memory; by default reservoir sampling over the stream. Methods
        declared without a buffer have ``buffer_size`` 0, so an empty one."""
        return ReservoirBuffer(self.config.buffer_size, device=self.device,
                               seed=self.config.seed + 1, task_of_class=self.class_to_task)

    def training_tasks(self, task: int) -> list[int]:
        """The tasks whose training data form the stream of ``task`` (default: its own)."""
        return [task]

    def training_data(self, task: int, data: TaskData) -> TaskData:
        """The stream of ``task``, given the data of its :meth:`training_tasks`: shuffled
        each epoch and fed to :meth:`observe` (asked after :meth:`begin_task`). Default:
        the data as they are. iCaRL joins its memory; BiC also holds a validation split
        out of it."""
        return data

    def changes_training_data(self) -> bool:
        """Whether this method overrides :meth:`training_data` (where it does not, the loop
        shuffles the tasks' data through their indices, without a copy)."""
        return type(self).training_data is not ContinualMethod.training_data

    def task_classes(self, task: int) -> range:
        """The labels of ``task``'s classes."""
        offsets = self.layout.task_offsets
        return range(offsets[task], offsets[task + 1])

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Class scores for network input (``normalize``-d), ``(N, classes)``: evaluation
        predicts their argmax over the visible classes. Default: the network's logits."""
        return self.net(inputs)

    def begin_task(self, task: int) -> None:
        self.task = task
        self.optimizer = PlainSGD(self.net.parameters(), self.config.lr)

    def observe(self, raw_inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One training step on a stream batch; returns the loss, detached."""
        raise NotImplementedError

    def end_task(self, task: int, data: TaskData) -> None:
        """After the last epoch of ``task``, before it is evaluated."""

    def state_dict(self) -> dict:
        """What a checkpoint needs besides the network: the buffer and any method state."""
        return {"task": self.task, "buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.task = state["task"]
        self.buffer.load_state_dict(state["buffer"])

    def stream_loss(self, logits, labels, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy on stream samples: GMS-masked to their own task when ``--gms``."""
        return self._cross_entropy(logits, labels, replayed=False, reduction=reduction)

    def replay_loss(self, logits, labels, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy on buffer samples: plain, unless ``--gms --gms-on-buffer``."""
        return self._cross_entropy(logits, labels, replayed=True, reduction=reduction)

    def stream_and_replay_loss(self, logits, labels, stream: int) -> torch.Tensor:
        """Mean cross-entropy over a stream batch (the first ``stream`` rows) and a replay
        batch in one: each row treated as :meth:`stream_loss` and :meth:`replay_loss`
        would treat it, with one mask and one softmax for all rows."""
        live = self.gms_rule.live(labels, self.live_by_class, replayed=stream)
        if live is None:
            return F.cross_entropy(logits, labels)
        return self.gms_cross_entropy(logits, labels, live, reduction="none").mean()

    def gms_cross_entropy(self, logits, labels, live, reduction: str = "mean") -> torch.Tensor:
        """:func:`~replaymask.core.gms.gms_cross_entropy` with the run's mask value, without
        its per-call argument checks (the configuration was checked once)."""
        return F.cross_entropy(gms_masked_logits(logits, live, self.config.gms_mask_value),
                               labels, reduction=reduction)

    def _cross_entropy(self, logits, labels, replayed: bool, reduction: str) -> torch.Tensor:
        live = self.gms_rule.live(labels, self.live_by_class, replayed=replayed)
        if live is None:
            return F.cross_entropy(logits, labels, reduction=reduction)
        return self.gms_cross_entropy(logits, labels, live, reduction)

    def update(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad()
        if torch.is_autocast_enabled(loss.device.type):
            with torch.autocast(loss.device.type, enabled=False):  # backward outside autocast
                loss.backward()
        else:
            loss.backward()
        self.optimizer.step()

    def remember(self, raw_inputs, labels, logits=None) -> None:
        """Offer the stream batch (not augmented) to the buffer."""
        self.buffer.add(raw_inputs, labels, logits=logits)
