"""The protocols of the class-incremental benchmarks (the DER paper's, as Mammoth runs them):
tasks, classes, epochs, batch size, backbone, normalisation and augmentation.

Plain data, without torch: the command line checks and lists them before anything loads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchmarkSpec:
    """The DER paper's protocol for one benchmark (see docs/protocol in the README)."""

    dataset: str
    n_tasks: int
    classes_per_task: int
    n_epochs: int
    batch_size: int
    backbone: str = "mlp"  # "mlp" | "resnet18"
    mean: tuple[float, ...] | None = None  # per-channel normalisation; None: pixels in [0, 1]
    std: tuple[float, ...] | None = None
    crop_padding: int | None = None  # training augmentation: random crop + flip; None: none
    lr_milestones: tuple[int, ...] = ()  # epochs (within each task) where the lr drops x0.1
    best_args_from: str | None = None  # the benchmark whose best arguments serve this one


BENCHMARKS = {
    "seq-mnist": BenchmarkSpec("mnist", n_tasks=5, classes_per_task=2, n_epochs=1, batch_size=10),
    # no best arguments were published for Seq-FMNIST: Seq-MNIST's serve it
    "seq-fmnist": BenchmarkSpec("fashion-mnist", n_tasks=5, classes_per_task=2, n_epochs=1,
                                batch_size=10, best_args_from="seq-mnist"),
    "seq-cifar10": BenchmarkSpec(
        "cifar10", n_tasks=5, classes_per_task=2, n_epochs=50, batch_size=32,
        backbone="resnet18", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2615),
        crop_padding=4),
    "seq-cifar100": BenchmarkSpec(
        "cifar100", n_tasks=10, classes_per_task=10, n_epochs=50, batch_size=32,
        backbone="resnet18", mean=(0.5071, 0.4867, 0.4408), std=(0.2675, 0.2565, 0.2761),
        crop_padding=4, lr_milestones=(35, 45)),
    "seq-tinyimg": BenchmarkSpec(
        "tinyimagenet", n_tasks=10, classes_per_task=20, n_epochs=100, batch_size=32,
        backbone="resnet18", mean=(0.4802, 0.4480, 0.3975), std=(0.2770, 0.2691, 0.2821),
        crop_padding=4),
}
