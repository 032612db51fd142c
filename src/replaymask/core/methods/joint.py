"""Joint training: the upper bound.

At task k the network is re-initialised and trained on the data of tasks 0..k
together (the training loop feeds them, shuffled), so every row of the accuracy
matrix is a joint model and the last row is the usual upper bound.
"""

from .base import ContinualMethod

METHOD = {
    "name": "joint",
    "label": "Joint",
    "class": "Joint",
    "order": 20,
    "buffer": False,
    "best_args": {
        "seq-mnist": ("Mammoth defaults", {None: {"lr": 0.03}}),
        "seq-cifar10": ("Mammoth defaults", {None: {"lr": 0.03}}),
        "seq-tinyimg": ("Mammoth defaults", {None: {"lr": 0.03}}),
        "seq-cifar100": ("Mammoth defaults", {None: {"lr": 0.03}}),
    },
}


class Joint(ContinualMethod):
    trains_on_all_seen_tasks = True

    def begin_task(self, task):
        if hasattr(self.net, "reset_parameters"):  # the backbone's own initialisation
            self.net.reset_parameters()
        else:
            for module in self.net.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
        super().begin_task(task)

    def observe(self, raw_inputs, labels):
        loss = self.stream_loss(self.net(self.prepare(raw_inputs)), labels)
        self.update(loss)
        return loss.detach()
