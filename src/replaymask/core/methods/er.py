"""Experience Replay (Chaudhry et al. 2019).

The replay batch is appended to the stream batch and one cross-entropy is averaged
over both, as in Mammoth; with ``--gms`` the stream rows are GMS-masked.
"""

import torch

from .base import ContinualMethod

METHOD = {
    "name": "er",
    "label": "ER",
    "class": "ER",
    "order": 30,
    "buffer": True,
    # the DER paper's best arguments (Buzzega et al. 2020, appendix), and Mammoth's for
    # Seq-CIFAR-100
    "best_args": {
        "seq-mnist": ("DER paper", {200: {"lr": 0.01, "minibatch_size": 10},
                                    500: {"lr": 0.1, "minibatch_size": 10},
                                    5120: {"lr": 0.1, "minibatch_size": 10}}),
        "seq-cifar10": ("DER paper", {200: {"lr": 0.1, "minibatch_size": 32},
                                      500: {"lr": 0.1, "minibatch_size": 32},
                                      5120: {"lr": 0.1, "minibatch_size": 32}}),
        "seq-tinyimg": ("DER paper", {200: {"lr": 0.1, "minibatch_size": 32},
                                      500: {"lr": 0.03, "minibatch_size": 32},
                                      5120: {"lr": 0.1, "minibatch_size": 32}}),
        "seq-cifar100": ("Mammoth", {500: {"lr": 0.1, "minibatch_size": 32},
                                     2000: {"lr": 0.1, "minibatch_size": 32}}),
    },
}


class ER(ContinualMethod):
    def observe(self, raw_inputs, labels):
        if self.buffer.is_empty():
            loss = self.stream_loss(self.net(self.prepare(raw_inputs)), labels)
        else:
            replay = self.buffer.sample(self.config.minibatch_size)
            inputs = torch.cat([self.prepare(raw_inputs), self.prepare(replay.examples)])
            loss = self.stream_and_replay_loss(self.net(inputs), torch.cat([labels, replay.labels]),
                                               stream=len(labels))
        self.update(loss)
        self.remember(raw_inputs, labels)
        return loss.detach()
