"""MER, Meta-Experience Replay (Riemer et al., ICLR 2019), as in Mammoth.

Defined per stream sample: for each sample of the stream batch, in order, ``--batch-num``
inner SGD steps, each on the cross-entropy of a replay batch with the sample appended,
each followed by a Reptile interpolation within the batch
(theta <- theta_before_step + beta (theta - theta_before_step)); then the sample is
offered to the reservoir, and the weights are interpolated across the sample's steps
(theta <- theta_before_sample + gamma (theta - theta_before_sample), ``--gamma``). A stream batch of
B samples so costs B x batch-num forward and backward passes of (minibatch + 1) rows:
the per-sample loop is the method (Mammoth runs it with batch size 1).
"""

import torch

from .base import ContinualMethod

METHOD = {
    "name": "mer",
    "label": "MER",
    "class": "MER",
    "order": 85,
    "buffer": True,
    "gms": ("rows",
            "one cross-entropy over the replay batch and the stream sample: the stream row "
            "masked, replayed rows only with --gms-on-buffer"),
    "settings": {
        "beta": {"kind": "float", "minimum": 0,
                 "help": "MER's within-batch Reptile interpolation of each inner step"},
        "gamma": {"kind": "float", "minimum": 0,
                  "help": "MER's across-sample Reptile interpolation of each sample's steps"},
        "batch_num": {"kind": "int", "minimum": 1, "maximum": 1000, "default": 1,
                      "help": "MER's inner steps per stream sample"},
    },
    # the DER paper's arguments for S-MNIST (Buzzega et al. 2020; Mammoth's utils/best_args.py,
    # unchanged from its first commit 7ab9db9 to e75a491)
    # (batch 1: one stream sample a step; beta = gamma = 1 make both interpolations the
    # identity, so MER is then one SGD step per sample on it and 128 replayed items)
    "best_args": {"seq-mnist": ("DER paper", {
        200: {"lr": 0.1, "minibatch_size": 128, "beta": 1.0, "gamma": 1.0, "batch_num": 1,
              "batch_size": 1},
        500: {"lr": 0.1, "minibatch_size": 128, "beta": 1.0, "gamma": 1.0, "batch_num": 1,
              "batch_size": 1},
        5120: {"lr": 0.03, "minibatch_size": 128, "beta": 1.0, "gamma": 1.0, "batch_num": 1,
               "batch_size": 1}})},
    "best_args_fallback": "seq-mnist",
}


class MER(ContinualMethod):
    def observe(self, raw_inputs, labels):
        params = self.optimizer.params
        settings = self.settings
        for row in range(len(labels)):
            sample, label = raw_inputs[row:row + 1], labels[row:row + 1]
            before_sample = weights_before(params, settings.gamma)
            for step in range(settings.batch_num):
                # the first step starts where the sample does: the same copy serves both
                before_step = (before_sample if step == 0 and before_sample is not None
                               else weights_before(params, settings.beta))
                raw, targets, stream = sample, label, 0
                if not self.buffer.is_empty():  # prepared together: one conversion
                    replay = self.buffer.sample(self.config.minibatch_size)
                    raw = torch.cat([replay.examples, sample])
                    targets = torch.cat([replay.labels, label])
                    stream = len(replay.labels)
                loss = self.replayed_then_stream_loss(self.net(self.prepare(raw)), targets,
                                                      stream)
                self.update(loss)
                interpolate(params, before_step, settings.beta)
            self.remember(sample, label)
            interpolate(params, before_sample, settings.gamma)
        return loss.detach()

    def replayed_then_stream_loss(self, logits, targets, replayed: int):
        """The mean cross-entropy over ``replayed`` replayed rows then the stream row."""
        if not self.gms_rule.enabled:
            return torch.nn.functional.cross_entropy(logits, targets)
        live = self.gms_rule.live(targets, self.live_by_class,
                                  replayed=torch.arange(len(targets),
                                                        device=targets.device) < replayed)
        if live is None:
            return torch.nn.functional.cross_entropy(logits, targets)
        return self.gms_cross_entropy(logits, targets, live)


def weights_before(params, weight: float) -> list[torch.Tensor] | None:
    """A copy of the weights for an interpolation with ``weight``; None where the
    interpolation is the identity (``weight`` 1), which needs none."""
    return None if weight == 1 else [p.detach().clone() for p in params]


@torch.no_grad()
def interpolate(params, start, weight: float) -> None:
    """theta <- start + weight (theta - start), in place (one ``foreach`` call per
    operation over all parameters: the same per-element arithmetic, less dispatch).

    At ``weight`` 1 this is the identity, and nothing is computed: the DER paper's S-MNIST
    arguments (beta = gamma = 1) make MER one SGD step per sample, and the two
    interpolations cost about a third of its step while changing the weights only by
    their rounding (Mammoth computes them; so did replaymask, and its MER runs stored
    before this change were run again)."""
    if weight == 1:
        return
    step = torch._foreach_sub(params, start)
    torch._foreach_mul_(step, weight)
    torch._foreach_add_(step, start)
    torch._foreach_copy_(params, step)
