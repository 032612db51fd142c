"""GSS, Gradient-based Sample Selection, greedy (Aljundi et al., NeurIPS 2019), as in Mammoth.

Training is ER's (``--batch-num`` steps per stream batch on one cross-entropy over the
stream batch and a replay batch). The memory is chosen by gradients
(:class:`~replaymask.core.buffer.GradientSelectionBuffer`): after the steps, the
gradient of the stream batch's loss is compared (cosine) with the per-item gradients of
``--gss-minibatch-size`` items drawn from the memory; the largest similarity + 1 is the
batch's score, and, once the memory is full, items of a batch scoring below 1 are scored
one by one and may evict stored items, redundant ones more likely. Gradients are taken
with the network in evaluation mode; the per-item gradients are one vectorised pass
(``torch.func``), not a loop.
"""

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from ..buffer import GradientSelectionBuffer
from .base import ContinualMethod

METHOD = {
    "name": "gss",
    "label": "GSS",
    "class": "GSS",
    "order": 86,
    "buffer": True,
    "gms": ("rows",
            "one cross-entropy over the stream batch and a replay batch: stream rows masked, "
            "replayed rows only with --gms-on-buffer; the selection's gradients are of the "
            "plain cross-entropy"),
    "settings": {
        "gss_minibatch_size": {"kind": "int", "minimum": 1, "maximum": 100000, "default": 10,
                               "help": "GSS's memory items whose gradients score a batch"},
        "batch_num": {"kind": "int", "minimum": 1, "maximum": 1000, "default": 1,
                      "help": "GSS's steps per stream batch"},
    },
    # the DER paper's arguments for S-MNIST (Buzzega et al. 2020; Mammoth's utils/best_args.py,
    # unchanged from its first commit 7ab9db9 to e75a491)
    "best_args": {
        "seq-mnist": ("DER paper", {
            200: {"lr": 0.1, "minibatch_size": 10, "gss_minibatch_size": 10,
                  "batch_num": 1, "batch_size": 128},
            500: {"lr": 0.1, "minibatch_size": 10, "gss_minibatch_size": 10,
                  "batch_num": 1, "batch_size": 128},
            5120: {"lr": 0.1, "minibatch_size": 128, "gss_minibatch_size": 10,
                   "batch_num": 1, "batch_size": 128}}),
        "seq-cifar10": ("Mammoth", {500: {"lr": 0.05, "minibatch_size": 10}}),
    },
    "best_args_fallback": "seq-cifar10",
}


class GSS(ContinualMethod):
    def create_buffer(self):
        return GradientSelectionBuffer(self.config.buffer_size, device=self.device,
                                       seed=self.config.seed + 1,
                                       task_of_class=self.class_to_task)

    def observe(self, raw_inputs, labels):
        stream = len(labels)
        for _ in range(self.settings.batch_num):
            inputs, targets = self.prepare(raw_inputs), labels
            if not self.buffer.is_empty():
                replay = self.buffer.sample(self.config.minibatch_size)
                inputs = torch.cat([inputs, self.prepare(replay.examples)])
                targets = torch.cat([labels, replay.labels])
            loss = self.stream_and_replay_loss(self.net(inputs), targets, stream=stream)
            self.update(loss)
        self._remember(raw_inputs, labels)
        return loss.detach()

    def _remember(self, raw_inputs, labels):
        buffer = self.buffer
        if buffer.is_empty():
            buffer.add_scored(raw_inputs, labels, 0.1, lambda row: 0.1)  # Mammoth's start
            return
        drawn = buffer.sample(self.settings.gss_minibatch_size)
        with evaluation_mode(self.net):  # once for the step's two or three gradient calls
            memory = self.per_item_gradients(drawn.examples, drawn.labels)
            batch = self.batch_gradient(raw_inputs, labels)
            batch_score = similarity_score(batch, memory)
            scores = []

            def item_score(row):  # asked only once the memory is full: every row's at once
                if not scores:
                    own = self.per_item_gradients(raw_inputs, labels)
                    scores.extend((cosine_similarities(own, memory).max(1).values
                                   + 1).tolist())
                return scores[row]
            buffer.add_scored(raw_inputs, labels, batch_score, item_score)

    def batch_gradient(self, raw_inputs, labels) -> list[torch.Tensor]:
        """The gradient of the batch's mean cross-entropy (evaluation mode), as one row of
        each parameter's block (:func:`cosine_similarities`)."""
        return self._gradients(raw_inputs.unsqueeze(0), labels.unsqueeze(0))

    def per_item_gradients(self, raw_inputs, labels) -> list[torch.Tensor]:
        """Each item's cross-entropy gradient (evaluation mode), per parameter: one
        (items, parameter's size) block each, in the network's parameter order."""
        return self._gradients(raw_inputs.unsqueeze(1), labels.unsqueeze(1))

    def _gradients(self, grouped_inputs, grouped_labels):
        net = getattr(self.net, "_orig_mod", self.net)
        params = {name: p.detach() for name, p in net.named_parameters() if p.requires_grad}
        # the groups' inputs normalised as one batch, outside the vectorised map
        inputs = self.normalize(grouped_inputs.flatten(0, 1)).unflatten(
            0, grouped_inputs.shape[:2])

        def loss(weights, inputs, targets):
            return F.cross_entropy(functional_call(net, weights, (inputs,)), targets)
        with evaluation_mode(net):
            gradients = vmap(grad(loss), in_dims=(None, 0, 0))(params, inputs, grouped_labels)
        return [g.reshape(len(grouped_inputs), -1) for g in gradients.values()]


@contextmanager
def evaluation_mode(net: torch.nn.Module):
    """``net`` in evaluation mode inside the block and back in training mode after; where
    it is already in evaluation mode (an enclosing block), nothing is done (no walk over
    its modules)."""
    if not net.training:
        yield
        return
    net.eval()
    try:
        yield
    finally:
        net.train()


def similarity_score(gradient: list[torch.Tensor], memory: list[torch.Tensor]) -> float:
    """GSS's score: the largest cosine similarity of ``gradient`` (one row per block) with
    an item of ``memory``, plus 1 (in [0, 2])."""
    return float(cosine_similarities(gradient, memory).max()) + 1


def cosine_similarities(rows: list[torch.Tensor], memory: list[torch.Tensor],
                        eps: float = 1e-8) -> torch.Tensor:
    """(rows, memory items): the cosine similarity of each row with each memory item, both
    given as blocks, one per parameter ((rows, size) and (items, size)), whose
    concatenation is the flat gradient: the dot products are the blocks' matrix products
    summed, each norm the blocks' norms combined, clamped at ``eps`` as
    ``F.cosine_similarity`` clamps them.

    Matrix products on the blocks instead of ``F.cosine_similarity`` on flat gradients: no
    flat copy (128 x 89,610 floats for a full GSS batch on the MLP) and no normalised
    copies; the batch's score takes about 0.1 ms instead of 1.7, a full batch's items'
    scores a few milliseconds instead of about 80 (one thread). It rounds differently from
    ``F.cosine_similarity`` (the sums are taken in another order; a few float32 ulps), so
    the GSS runs stored before this change were run again with it.
    """
    dots = sum(row_block @ memory_block.T for row_block, memory_block
               in zip(rows, memory, strict=True))
    return dots / _norms(rows, eps).unsqueeze(1) / _norms(memory, eps)


def _norms(blocks: list[torch.Tensor], eps: float) -> torch.Tensor:
    per_block = torch.stack([torch.linalg.vector_norm(block, 2, dim=1) for block in blocks])
    return torch.linalg.vector_norm(per_block, 2, dim=0).clamp_min(eps)
