"""GEM, Gradient Episodic Memory (Lopez-Paz & Ranzato, NeurIPS 2017).

The memory holds items of every earlier task (class-balanced over the seen classes,
refilled at random after each task, as in Mammoth). Each step computes the gradient
g_k of the cross-entropy on the memory's items of each earlier task k and the gradient
g of the stream cross-entropy; where some g . g_k < 0, g is replaced by the closest
vector (in L2) whose dot product with every g_k is >= 0, through GEM's dual quadratic
programme: min_v 1/2 v' (G G' + eps I) v + (G g)' v subject to v >= gamma (the
margin, ``--gamma``), then g <- G' v + g. The programme is solved by quadprog through
qpsolvers. The memory gradients take one forward and backward pass per earlier task
and step, and a violated step one solve on the host: GEM is the slowest method here.
"""

import numpy as np
import qpsolvers
import torch

from ..buffer import rebalance_by_class
from .agem import draw_at_random
from .base import ContinualMethod
from .gradients import flat_gradient, set_gradient

METHOD = {
    "name": "gem",
    "label": "GEM",
    "class": "GEM",
    "order": 81,
    "buffer": True,
    "gms": ("stream",
            "g is the gradient of the GMS-masked stream cross-entropy; the memory's "
            "cross-entropies are masked only with --gms-on-buffer"),
    "settings": {
        "gamma": {"kind": "float", "minimum": 0,
                  "help": "the margin: the least dot product of the update with each "
                          "memory gradient, in the dual programme"},
    },
    # the DER paper's arguments for S-MNIST (Buzzega et al. 2020; Mammoth's utils/best_args.py,
    # unchanged from its first commit 7ab9db9 to e75a491)
    "best_args": {
        "seq-mnist": ("DER paper", {200: {"lr": 0.01, "gamma": 1.0},
                                    500: {"lr": 0.03, "gamma": 0.5},
                                    5120: {"lr": 0.1, "gamma": 1.0}}),
        "seq-cifar10": ("Mammoth", {None: {"lr": 0.03, "gamma": 0.5}}),
    },
    "best_args_fallback": "seq-mnist",
}

EPSILON = 1e-3  # added to the Gram matrix's diagonal: keeps the programme strictly convex


def project_to_cone(gradient: np.ndarray, memories: np.ndarray, margin: float) -> np.ndarray:
    """GEM's projection: the gradient closest to ``gradient`` whose dot product with each
    row of ``memories`` is >= 0, via the dual programme (float64 throughout)."""
    rows = len(memories)
    gram = memories @ memories.T
    gram = 0.5 * (gram + gram.T) + EPSILON * np.eye(rows)
    dual = qpsolvers.solve_qp(gram, memories @ gradient, -np.eye(rows),
                              -margin * np.ones(rows), solver="quadprog")
    if dual is None:
        raise RuntimeError("GEM's quadratic programme has no solution")
    return memories.T @ dual + gradient


class GEM(ContinualMethod):
    _memory_by_task: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # see memory_by_task

    def observe(self, raw_inputs, labels):
        params = self.optimizer.params
        memories = []
        for examples, memory_labels in self.memory_by_task():
            self.optimizer.zero_grad()
            inputs = self.prepare(examples) if self.augments else examples
            self.replay_loss(self.net(inputs), memory_labels).backward()
            memories.append(flat_gradient(params))
        self.optimizer.zero_grad()
        loss = self.stream_loss(self.net(self.prepare(raw_inputs)), labels)
        loss.backward()
        if memories:
            stream, stacked = flat_gradient(params), torch.stack(memories)
            if bool((stacked @ stream < 0).any()):
                projected = project_to_cone(stream.double().cpu().numpy(),
                                            stacked.double().cpu().numpy(),
                                            self.settings.gamma)
                set_gradient(params, torch.from_numpy(projected).to(stream))
        self.optimizer.step()
        return loss.detach()

    def memory_by_task(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(examples, labels) of each earlier task's items in the memory, in task order;
        the examples prepared where ``prepare`` does not augment. The memory changes only
        at the end of a task, so this is gathered once per task, not at every step."""
        if self.buffer.is_empty():
            return []
        if self._memory_by_task is None:
            count = len(self.buffer)
            task_ids = self.buffer.task_ids[:count]
            memory = []
            for task in torch.unique(task_ids).tolist():
                rows = (task_ids == task).nonzero().squeeze(1)
                examples = self.buffer.examples[rows]
                memory.append((examples if self.augments else self.prepare(examples),
                               self.buffer.labels[rows]))
            self._memory_by_task = memory
        return self._memory_by_task

    @torch.no_grad()
    def end_task(self, task, data):
        rebalance_by_class(self.buffer, data.inputs, data.labels, task,
                           self.task_classes(task), choose=draw_at_random)
        self._memory_by_task = None

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._memory_by_task = None
