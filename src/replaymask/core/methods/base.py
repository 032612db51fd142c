"""What every method shares: the optimiser, the GMS-aware losses, the buffer hand-off."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..buffer import ReservoirBuffer
from ..gms import GMSRule, gms_masked_logits, same_task_table
from ..run_config import RunConfig


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

    Subclasses implement :meth:`observe`; the training loop calls ``begin_task``,
    ``observe`` for every stream batch, then ``end_task``. ``prepare`` turns raw stored
    images into network input (the training transform: augmented where the benchmark
    augments, with fresh draws at each call). ``settings`` are the method's own settings,
    as its file declares them (``self.settings.alpha``).
    """

    trains_on_all_seen_tasks = False  # the joint upper bound

    def __init__(
        self,
        net: nn.Module,
        prepare: Callable[[torch.Tensor], torch.Tensor],
        class_to_task: torch.Tensor,
        config: RunConfig,
    ):
        self.net = net
        self.prepare = prepare  # raw stored images -> network input (augmented if any)
        self.class_to_task = class_to_task
        self.live_by_class = same_task_table(class_to_task)  # GMS: live classes per label
        self.gms_rule = GMSRule(config.gms, config.gms_mask_value, config.gms_on_buffer)
        self.config = config
        self.settings = config.method_settings
        device = next(net.parameters()).device
        # methods declared without a buffer have buffer_size 0 in their config
        self.buffer = ReservoirBuffer(config.buffer_size, device=device, seed=config.seed + 1,
                                      task_of_class=class_to_task)
        self.task = 0
        self.optimizer = PlainSGD(net.parameters(), config.lr)

    def begin_task(self, task: int) -> None:
        self.task = task
        self.optimizer = PlainSGD(self.net.parameters(), self.config.lr)

    def observe(self, raw_inputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One training step on a stream batch; returns the loss, detached."""
        raise NotImplementedError

    def end_task(self, task: int, images: torch.Tensor, labels: torch.Tensor) -> None:
        """After the last epoch of ``task``; ``images``/``labels`` are its raw training data."""

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
