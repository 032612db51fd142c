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
from .gradients import backward_into, gradient_views

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


def project_to_cone(gradient: torch.Tensor, memories: torch.Tensor, margin: float,
                    gram: torch.Tensor | None = None,
                    dots: torch.Tensor | None = None) -> torch.Tensor:
    """GEM's projection, in place: ``gradient`` becomes the gradient closest to it whose
    dot product with each row of ``memories`` is >= 0 (>= the margin's push),
    ``gradient + memories' v`` with v the solution of the dual programme
    (:func:`cone_dual`); returned. ``gram`` (G G') and ``dots`` (G g), if already taken."""
    gram = memories @ memories.T if gram is None else gram
    dots = memories @ gradient if dots is None else dots
    return gradient.addmv_(memories.T, cone_dual(gram, dots, margin))


def cone_dual(gram: torch.Tensor, dots: torch.Tensor, margin: float) -> torch.Tensor:
    """The dual programme's solution v: min_v 1/2 v' (G G' + eps I) v + (G g)' v subject to
    v >= margin, given ``gram`` = G G' and ``dots`` = G g (G: the memories' gradients, one
    per row; g: the stream's).

    The products over the parameters are taken by the caller in the gradients' own dtype
    (float32), where the gradients are; the programme itself (rows x rows) is solved in
    float64 by quadprog on the host. GEM's authors and Mammoth convert the gradients to
    float64 first; here that conversion and the float64 products took about 470 of a
    projection's 650 us (one thread, 3 rows of 89,610), and the results differ by float32
    rounding (about 1e-7 relative), so the GEM runs stored before this change were run
    again."""
    rows = len(gram)
    gram = gram.cpu().double().numpy()
    gram = 0.5 * (gram + gram.T) + EPSILON * np.eye(rows)
    dual = qpsolvers.solve_qp(gram, dots.cpu().double().numpy(), -np.eye(rows),
                              -margin * np.ones(rows), solver="quadprog")
    if dual is None:
        raise RuntimeError("GEM's quadratic programme has no solution")
    return torch.from_numpy(dual).to(dots)


class GEM(ContinualMethod):
    # see memory_by_task
    _memory_by_task: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    # (earlier tasks + 1, parameters): the gradients of the memories' losses and the
    # stream's, which the backward passes write into (through views of each row, made
    # once a task); after a step the parameters' .grad are views of the stream's row
    _gradient_rows: torch.Tensor | None = None
    _row_views: list[list[torch.Tensor]] | None = None

    def observe(self, raw_inputs, labels):
        params = self.optimizer.params
        memory_by_task = self.memory_by_task()
        if not memory_by_task:
            loss = self.stream_loss(self.net(self.prepare(raw_inputs)), labels)
            self.update(loss)
            return loss.detach()
        rows, views = self._gradient_rows, self._row_views
        for row, (examples, memory_labels) in enumerate(memory_by_task):
            inputs = self.prepare(examples) if self.augments else examples
            backward_into(self.replay_loss(self.net(inputs), memory_labels), params,
                          rows[row], views[row])
        loss = self.stream_loss(self.net(self.prepare(raw_inputs)), labels)
        backward_into(loss, params, rows[-1], views[-1])
        # every dot product in one pass over the gradients: G G' and G g
        products = rows @ rows.T
        gram, dots = products[:-1, :-1], products[:-1, -1]
        if min(dots.tolist()) < 0:  # in place: the .grad are views of the stream's row
            project_to_cone(rows[-1], rows[:-1], self.settings.gamma, gram, dots)
        self.optimizer.step()
        return loss.detach()

    def memory_by_task(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(examples, labels) of each earlier task's items in the memory, in task order;
        the examples prepared where ``prepare`` does not augment. The memory changes only
        at the end of a task, so this is gathered once per task, not at every step, with
        the matrix the steps write the gradients into (one row per earlier task, and the
        stream's)."""
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
            params = self.optimizer.params
            self._gradient_rows = params[0].new_empty(len(memory) + 1,
                                                  sum(p.numel() for p in params))
            self._row_views = [gradient_views(params, row) for row in self._gradient_rows]
        return self._memory_by_task

    @torch.no_grad()
    def end_task(self, task, data):
        rebalance_by_class(self.buffer, data.inputs, data.labels, task,
                           self.task_classes(task), choose=draw_at_random)
        self._memory_by_task = None

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self._memory_by_task = None
