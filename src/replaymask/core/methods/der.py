"""Dark Experience Replay (Buzzega et al. 2020): stream CE + alpha * MSE to stored logits.

Stored logits are the raw (never masked) outputs: by default those of the stream
forward pass before the step (Mammoth); ``--der-logits post-step`` stores those of a
fresh forward pass after it (the GMS authors' fork).
"""

import torch
import torch.nn.functional as F

from .base import ContinualMethod

METHOD = {
    "name": "der",
    "label": "DER",
    "class": "DER",
    "order": 40,
    "buffer": True,
    "gms": ("stream",
            "the stream cross-entropy masked; the logit replay (MSE) is unchanged"),
    "stores_logits": True,
    "settings": {
        "alpha": {"kind": "float", "minimum": 0,
                  "help": "weight of the logit replay (MSE to the stored logits)"},
        "der_logits": {
            "kind": "choice", "choices": ["stream", "post-step"], "default": "stream",
            "help": "logits stored: of the stream forward pass (Mammoth) or of a fresh pass "
                    "after the step (the GMS authors' fork); never masked"},
    },
    # the DER paper's best arguments, and Mammoth's for Seq-CIFAR-100
    "best_args": {
        "seq-mnist": ("DER paper", {
            200: {"lr": 0.03, "minibatch_size": 10, "alpha": 0.2},
            500: {"lr": 0.03, "minibatch_size": 128, "alpha": 1.0},
            5120: {"lr": 0.1, "minibatch_size": 128, "alpha": 0.5}}),
        "seq-cifar10": ("DER paper", {
            200: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.3},
            500: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.3},
            5120: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.3}}),
        "seq-tinyimg": ("DER paper", {
            200: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.1},
            500: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.1},
            5120: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.1}}),
        "seq-cifar100": ("Mammoth", {
            500: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.3},
            2000: {"lr": 0.03, "minibatch_size": 32, "alpha": 0.3}}),
    },
}


class DER(ContinualMethod):
    def observe(self, raw_inputs, labels):
        inputs = self.prepare(raw_inputs)
        logits = self.net(inputs)
        loss = self.stream_loss(logits, labels) + self.logit_replay_loss()
        self.update(loss)
        self.remember(raw_inputs, labels, logits=self.logits_to_store(inputs, logits))
        return loss.detach()

    def logit_replay_loss(self) -> torch.Tensor | float:
        if self.buffer.is_empty():
            return 0.0
        replay = self.buffer.sample(self.config.minibatch_size)
        replayed_logits = self.net(self.prepare(replay.examples))
        return self.settings.alpha * F.mse_loss(replayed_logits, replay.logits)

    def logits_to_store(self, inputs, stream_logits):
        if self.settings.der_logits == "post-step":
            with torch.no_grad():
                return self.net(inputs)
        return stream_logits.detach()
