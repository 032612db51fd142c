"""Joint training: the upper bound.

At task k the network is re-initialised and trained on the data of tasks 0..k
together (its :meth:`~Joint.training_tasks`: the training loop feeds them, shuffled), so
every row of the accuracy matrix is a joint model and the last row is the usual upper
bound.
"""

from .base import ContinualMethod

METHOD = {
    "name": "joint",
    "label": "Joint",
    "class": "Joint",
    "order": 20,
    "buffer": False,
    "gms": ("stream",
            "the cross-entropy over the joint stream (every task so far), each row masked to "
            "its own task"),
    "best_args": {
        "seq-mnist": ("Mammoth defaults", {None: {"lr": 0.03}}),
        "seq-cifar10": ("Mammoth defaults", {None: {"lr": 0.03}}),
        "seq-tinyimg": ("Mammoth defaults", {None: {"lr": 0.03}}),
        "seq-cifar100": ("Mammoth defaults", {None: {"lr": 0.03}}),
    },
}


class Joint(ContinualMethod):
    def training_tasks(self, task):
        return list(range(task + 1))

    def begin_task(self, task):
        reinitialise(self.net)
        super().begin_task(task)

    def observe(self, raw_inputs, labels):
        loss = self.stream_loss(self.net(self.prepare(raw_inputs)), labels)
        self.update(loss)
        return loss.detach()


def reinitialise(net) -> None:
    """Draw the network's weights afresh: its own ``reset_parameters`` where it has one,
    else each module's."""
    if hasattr(net, "reset_parameters"):  # the backbone's own initialisation
        net.reset_parameters()
    else:
        for module in net.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
