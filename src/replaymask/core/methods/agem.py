"""A-GEM, Averaged Gradient Episodic Memory (Chaudhry et al., ICLR 2019).

Each step: g, the gradient of the stream cross-entropy; g_ref, the gradient of the
cross-entropy on a replay batch; where g . g_ref < 0 the update would raise the replay
loss, so g is projected onto the half-space that does not:
g <- g - (g . g_ref / g_ref . g_ref) g_ref. One SGD step with g.

The memory (``--agem-memory``):
  * ``balanced`` (default): after each task, class-balanced over the classes seen so far
    (``buffer_size // classes`` items each; the earlier classes keep their first items,
    the new ones are drawn at random from the task's data), as Mammoth's GEM keeps it;
  * ``per_task``: ``buffer_size // tasks`` items of each task, drawn at random from its
    data at its end, as the code behind the DER paper's A-GEM numbers kept it (Mammoth's
    first commit, 7ab9db9); the DER paper's S-MNIST row asks for it;
  * ``batch``: one stream batch of each task, as Mammoth e75a491's A-GEM keeps it (it
    stores ``batch_size`` items per task whatever ``--buffer-size`` says: 10 per task on
    S-MNIST).
"""

import torch

from ..buffer import rebalance_by_class
from .base import ContinualMethod
from .gradients import backward_into, gradient_views

METHOD = {
    "name": "agem",
    "label": "A-GEM",
    "class": "AGEM",
    "order": 80,
    "buffer": True,
    "gms": ("stream",
            "g is the gradient of the GMS-masked stream cross-entropy; the reference "
            "gradient's replay cross-entropy is masked only with --gms-on-buffer"),
    "settings": {
        "agem_memory": {"kind": "choice", "choices": ["balanced", "per_task", "batch"],
                        "default": "balanced",
                        "help": "the memory: class-balanced over the seen classes, "
                                "buffer_size // tasks random items per task (the DER "
                                "paper's), or one stream batch per task (Mammoth's)"},
    },
    # the DER paper's arguments for S-MNIST (Buzzega et al. 2020; Mammoth's utils/best_args.py,
    # unchanged from its first commit 7ab9db9 to e75a491)
    "best_args": {
        "seq-mnist": ("DER paper", {200: {"lr": 0.1, "minibatch_size": 128,
                                           "agem_memory": "per_task"},
                                    500: {"lr": 0.1, "minibatch_size": 128,
                                           "agem_memory": "per_task"},
                                    5120: {"lr": 0.1, "minibatch_size": 128,
                                           "agem_memory": "per_task"}}),
        "seq-cifar10": ("Mammoth", {None: {"lr": 0.03}}),
    },
    "best_args_fallback": "seq-mnist",
}


def projection(stream, reference, dot, out=None):
    """``g - (g . g_ref / g_ref . g_ref) g_ref``: g projected onto the half-space where the
    update does not raise the replay loss (g_ref . g_ref kept above 0); into ``out``
    (``stream`` itself: in place) if given."""
    return torch.sub(stream, dot / (reference @ reference).clamp(min=1e-30) * reference,
                     out=out)


def select_on_device(tensor) -> bool:
    """Whether to choose between g and its projection on the device (an accelerator, where
    reading ``g . g_ref < 0`` back to the host would stall every step) rather than in
    Python (the CPU); both give the same gradient to the last bit."""
    return tensor.device.type != "cpu"


class AGEM(ContinualMethod):
    # (2, parameters): g_ref's row and g's, which the backward passes write into (through
    # views of each row, made once); after a step the parameters' .grad are views of g's
    _gradient_rows: torch.Tensor | None = None
    _row_views: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None

    def observe(self, raw_inputs, labels):
        loss = self.stream_loss(self.net(self.prepare(raw_inputs)), labels)
        if self.buffer.is_empty():
            self.update(loss)
            return loss.detach()
        params = self.optimizer.params
        if self._gradient_rows is None:
            self._gradient_rows = params[0].new_empty(2, sum(p.numel() for p in params))
            self._row_views = tuple(gradient_views(params, row) for row in self._gradient_rows)
        (reference, stream), (reference_views, stream_views) = \
            self._gradient_rows, self._row_views
        backward_into(loss, params, stream, stream_views)  # g
        replay = self.buffer.sample(self.config.minibatch_size)
        replay_loss = self.replay_loss(self.net(self.prepare(replay.examples)), replay.labels)
        backward_into(replay_loss, params, reference, reference_views)  # g_ref
        for p, view in zip(params, stream_views, strict=True):  # .grad: g again
            p.grad = view
        dot = stream @ reference
        if select_on_device(dot):  # no host sync per step
            stream.copy_(torch.where(dot < 0, projection(stream, reference, dot), stream))
        elif float(dot) < 0:  # on the CPU a host branch is free
            projection(stream, reference, dot, out=stream)
        self.optimizer.step()
        return loss.detach()

    @torch.no_grad()
    def end_task(self, task, data):
        memory = self.settings.agem_memory
        if memory in ("batch", "per_task"):
            if memory == "batch":  # the first batch of the task's (shuffled) data
                chosen = torch.arange(min(self.config.batch_size, len(data.labels)),
                                      device=data.labels.device)
            else:
                share = self.buffer.capacity // self.layout.n_tasks
                chosen = draw_at_random(torch.arange(len(data.labels),
                                                     device=data.labels.device), share)
            self.buffer.add(data.inputs[chosen], data.labels[chosen])
            return
        rebalance_by_class(self.buffer, data.inputs, data.labels, task,
                           self.task_classes(task), choose=draw_at_random)


def draw_at_random(indices: torch.Tensor, count: int) -> torch.Tensor:
    """``count`` of ``indices`` drawn uniformly without replacement (torch's generator)."""
    return indices[torch.randperm(len(indices), device=indices.device)[:count]]
