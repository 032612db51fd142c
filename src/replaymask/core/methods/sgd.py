"""Fine-tuning: the lower bound. Only the stream cross-entropy (GMS-masked with --gms)."""

from .base import ContinualMethod

METHOD = {
    "name": "sgd",
    "label": "SGD",
    "class": "SGD",
    "order": 10,
    "buffer": False,
    "gms": ("stream",
            "the stream cross-entropy, masked to each sample's task"),
    # Mammoth's defaults: the DER paper tunes no fine-tuning baseline
    "best_args": {
        "seq-mnist": ("Mammoth defaults", {None: {"lr": 0.03}}),
        "seq-cifar10": ("Mammoth defaults", {None: {"lr": 0.1}}),
        "seq-tinyimg": ("Mammoth defaults", {None: {"lr": 0.03}}),
        "seq-cifar100": ("Mammoth defaults", {None: {"lr": 0.03}}),
    },
}


class SGD(ContinualMethod):
    def observe(self, raw_inputs, labels):
        loss = self.stream_loss(self.net(self.prepare(raw_inputs)), labels)
        self.update(loss)
        return loss.detach()
