"""The training loop: benchmark -> tasks -> method steps -> evaluation -> accuracy matrix."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from . import __version__
from .analysis import StabilityProbe
from .benchmarks import Benchmark
from .config import RunConfig
from .evaluation import evaluate
from .methods import METHOD_CLASSES
from .metrics import summarize

CHECK_EVERY = 100  # steps between loss read-backs (divergence check, progress bar)


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class RunResult:
    config: RunConfig
    hyperparameter_source: str
    benchmark_source: str
    class_order: list[int]
    accuracy_matrix: dict[str, list[list[float]]]
    random_init_accuracy: dict[str, list[float]]
    before_task_accuracy: dict[str, list[float | None]]
    metrics: dict[str, dict]
    wall_time_s: float
    task_times_s: list[float] = field(default_factory=list)
    analysis: list[dict] | None = None

    def to_dict(self) -> dict:
        return {
            "config": self.config.to_dict(),
            "hyperparameter_source": self.hyperparameter_source,
            "benchmark": {"source": self.benchmark_source, "class_order": self.class_order},
            "accuracy_matrix": self.accuracy_matrix,
            "metrics": self.metrics,
            "random_init_accuracy": self.random_init_accuracy,
            "before_task_accuracy": self.before_task_accuracy,
            "wall_time_s": self.wall_time_s,
            "task_times_s": self.task_times_s,
            "versions": {"replaymask": __version__, "torch": torch.__version__},
            **({"analysis": self.analysis} if self.analysis is not None else {}),
        }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(config: RunConfig, benchmark: Benchmark, hyperparameter_source: str = "",
          progress: bool = True, analysis: bool = False) -> RunResult:
    """Run ``config`` (already resolved) on ``benchmark`` and return its results.

    ``analysis`` adds the stability instrumentation of :mod:`replaymask.analysis`
    (measured on probe batches; the training itself is unchanged).
    """
    start = time.perf_counter()
    seed_everything(config.seed)
    device = torch.device(config.device)
    benchmark = benchmark.to(device)
    net = benchmark.make_backbone().to(device)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = torch.compile(net) if config.compile else net
    # one generator per stream of random draws, on the device: no host round trips
    data_order = torch.Generator(device=device).manual_seed(config.seed)
    augmentation = torch.Generator(device=device).manual_seed(config.seed + 2)
    train_transform = benchmark.train_transform(augmentation, config.channels_last)
    method = METHOD_CLASSES[config.model](model, train_transform,
                                          benchmark.class_to_task.to(device), config)
    precision = torch.autocast(device.type, dtype=torch.bfloat16,
                               enabled=config.precision == "bf16")
    tasks = range(benchmark.n_tasks)
    probe = StabilityProbe(method, benchmark, config.seed) if analysis else None
    steps_done = 0

    def evaluate_tasks(seen, visible):
        with precision:
            return evaluate(model, benchmark, seen, visible)

    random_class_il, random_task_il = evaluate_tasks(list(tasks), list(tasks))
    matrix = {"class_il": [], "task_il": []}
    before = {"class_il": [None], "task_il": [None]}
    task_times = []
    steps_per_task = [
        _steps(benchmark, config, task, method.trains_on_all_seen_tasks) for task in tasks
    ]
    bar = tqdm(total=sum(steps_per_task), disable=not progress, unit="step", mininterval=0.5,
               desc=f"{config.model}{' +GMS' if config.gms else ''} {config.dataset}")
    for task in tasks:
        task_start = time.perf_counter()
        if task > 0:
            class_il, task_il = evaluate_tasks([task], [task])
            before["class_il"].append(class_il[0])
            before["task_il"].append(task_il[0])
        method.begin_task(task)
        if probe is not None:
            probe.begin_task(task)
        seen_tasks = range(task + 1) if method.trains_on_all_seen_tasks else [task]
        indices = torch.cat([benchmark.task_indices("train", t) for t in seen_tasks])
        for epoch in range(config.n_epochs):
            method.optimizer.lr = learning_rate(config, epoch)
            order = indices[torch.randperm(len(indices), generator=data_order, device=device)]
            images, labels = benchmark.train_images[order], benchmark.train_labels[order]
            with precision:
                steps_done = _run_epoch(method, images, labels, config.batch_size, bar, task,
                                        probe, steps_done)
        with precision:
            method.end_task(task, images, labels)
        seen = list(range(task + 1))
        class_il, task_il = evaluate_tasks(seen, [task] * len(seen))
        matrix["class_il"].append(class_il)
        matrix["task_il"].append(task_il)
        task_times.append(time.perf_counter() - task_start)
        bar.set_postfix_str(f"task {task + 1} class-il {sum(class_il) / len(class_il):.1f}%")
    bar.close()

    random_init = {"class_il": random_class_il, "task_il": random_task_il}
    return RunResult(
        config=config,
        hyperparameter_source=hyperparameter_source,
        benchmark_source=benchmark.source,
        class_order=list(benchmark.class_order),
        accuracy_matrix=matrix,
        random_init_accuracy=random_init,
        before_task_accuracy=before,
        metrics={key: summarize(matrix[key], before[key], random_init[key]) for key in matrix},
        wall_time_s=time.perf_counter() - start,
        task_times_s=task_times,
        analysis=probe.records if probe is not None else None,
    )


def learning_rate(config: RunConfig, epoch: int) -> float:
    """The step schedule within a task: x0.1 at each of ``config.lr_milestones`` (epochs)."""
    return config.lr * 0.1 ** sum(epoch >= milestone for milestone in config.lr_milestones)


def _steps(benchmark, config, task, cumulative) -> int:
    seen = range(task + 1) if cumulative else [task]
    samples = sum(len(benchmark.task_indices("train", t)) for t in seen)
    return config.n_epochs * -(-samples // config.batch_size)


def _run_epoch(method, images, labels, batch_size, bar, task, probe, steps_done) -> int:
    """One pass over the stream; returns the run's step count so far."""
    # Losses stay on the device and are read back every CHECK_EVERY steps only.
    running_loss = torch.zeros((), device=labels.device)
    pending = step = 0
    for step, first in enumerate(range(0, len(labels), batch_size), start=1):
        loss = method.observe(images[first:first + batch_size], labels[first:first + batch_size])
        running_loss += loss.float()
        pending += 1
        if step % CHECK_EVERY == 0 or first + batch_size >= len(labels):
            mean_loss = running_loss.item() / pending
            if not np.isfinite(mean_loss):
                raise DivergenceError(
                    f"training diverged (loss {mean_loss}) in task {task + 1} near step {step}; "
                    "try a smaller --lr")
            bar.update(pending)
            running_loss.zero_()
            pending = 0
            if probe is not None:
                probe.record(steps_done + step)
    return steps_done + step
