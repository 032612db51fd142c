"""The training loop: benchmark -> tasks -> method steps -> evaluation -> accuracy matrix."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.benchmarks import Benchmark
from ..version import __version__
from .analysis import StabilityProbe
from .checkpoint import load_newest_checkpoint, save_checkpoint
from .evaluation import evaluate, task_confusion
from .methods import method_class
from .methods.base import TaskData
from .metrics import summarize
from .networks import build_network
from .observer import TrainingObserver
from .results import DivergenceError, RunResult
from .run_config import RunConfig

CHECK_EVERY = 100  # steps between loss read-backs (divergence check, progress bar)


def cpu_model() -> str:
    """The CPU's model name. Float results of CPU kernels can differ between models (and
    between the instruction sets torch picks on them, recorded beside it as
    ``cpu_capability``): a run re-runs bit for bit on the CPU that recorded it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often to checkpoint: at the end of every task, and every
    ``every_steps`` training steps if > 0. ``resume`` continues from the newest sound
    checkpoint in ``directory`` (if there is one)."""

    directory: Path
    every_steps: int = 0
    resume: bool = False
    warn: Callable[[str], None] = print


class CheckpointMismatchError(RuntimeError):
    """The checkpoint to resume from was written for a different configuration."""


def train(config: RunConfig, benchmark: Benchmark, progress: bool = True,
          analysis: bool = False, checkpointing: Checkpointing | None = None,
          observer: TrainingObserver | None = None, net=None) -> RunResult:
    """Run ``config`` (resolved by :func:`replaymask.config.resolve`) on ``benchmark`` (the
    run's scenario applied) and return its results.

    ``net``: the nn.Module or factory the configuration's network was resolved from, where
    it is an object (else it is built by name); it is built after the seed is set
    (:func:`replaymask.experiments.execution.execute` has checked it on one batch).

    ``analysis`` adds the stability instrumentation of :mod:`replaymask.core.analysis`
    (measured on probe batches; the training itself is unchanged). ``checkpointing``
    saves everything needed to continue exactly: a resumed run ends with the same
    accuracy matrices as an uninterrupted one. ``observer`` (a
    :class:`TrainingObserver`) is told the loss, each task's accuracies and the analysis
    records as they come.
    """
    n_tasks = config.n_tasks or config.benchmark.n_tasks
    if n_tasks != benchmark.n_tasks or (config.n_tasks and len(set(benchmark.task_sizes)) > 1):
        raise ValueError(f"the configuration has {n_tasks} tasks, the benchmark "
                         f"{benchmark.n_tasks}: apply the run's scenario to it "
                         "(Benchmark.with_scenario)")
    start = time.perf_counter()
    seed_everything(config.seed)
    device = torch.device(config.device)
    benchmark = benchmark.to(device)
    net = build_network(config.network, benchmark.info, net).to(device)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    model = torch.compile(net) if config.compile else net
    # one generator per stream of random draws, on the device: no host round trips
    data_order = torch.Generator(device=device).manual_seed(config.seed)
    augmentation = torch.Generator(device=device).manual_seed(config.seed + 2)
    train_transform = benchmark.train_transform(augmentation, config.channels_last)
    method = method_class(config.model)(model, train_transform,
                                        benchmark.class_to_task.to(device), config,
                                        normalize=benchmark.test_transform)

    def precision():  # a fresh context each time: autocast objects are not re-entrant
        return torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=config.precision == "bf16")
    tasks = range(benchmark.n_tasks)
    probe = StabilityProbe(method, benchmark, config.seed) if analysis else None

    def evaluate_tasks(seen, visible):
        with precision():
            return evaluate(model, benchmark, seen, visible, predict=method.predict)

    saved = _load_checkpoint(checkpointing, config, device)
    if saved is not None:
        run_state = json.loads(saved["run_state"])
    else:
        random_class_il, random_task_il = evaluate_tasks(list(tasks), list(tasks))
        run_state = {
            "position": {"task": 0, "epoch": 0, "batch": 0}, "steps_done": 0,
            "elapsed_s": 0.0, "task_times": [],
            "random_init": {"class_il": random_class_il, "task_il": random_task_il},
            "matrix": {"class_il": [], "task_il": []},
            "before": {"class_il": [None], "task_il": [None]},
        }
    position, elapsed_before = run_state["position"], run_state["elapsed_s"]
    matrix, before = run_state["matrix"], run_state["before"]
    sequence = saved["sequence"] if saved is not None else 0

    def save(task, epoch, batch):
        nonlocal sequence
        sequence += 1
        run_state["position"] = {"task": task, "epoch": epoch, "batch": batch}
        run_state["elapsed_s"] = elapsed_before + time.perf_counter() - start
        # the data order is re-drawn on resume from the state its epoch started with
        order_state = epoch_start_order if batch > 0 else data_order.get_state()
        save_checkpoint(checkpointing.directory, sequence, _snapshot(
            config, net, method, run_state, order_state, augmentation, sequence))

    if observer is not None:
        observer.begin(run_state["steps_done"])
    steps_per_task = [_steps(benchmark, config, method.training_tasks(task)) for task in tasks]
    bar = tqdm(total=sum(steps_per_task), initial=run_state["steps_done"],
               disable=not progress, unit="step", mininterval=0.5,
               desc=f"{config.model}{' +GMS' if config.gms else ''} {config.dataset}")
    for task in range(position["task"], benchmark.n_tasks):
        task_start = time.perf_counter()
        resuming = saved is not None and task == position["task"]
        mid_task = resuming and (position["epoch"], position["batch"]) != (0, 0)
        if resuming:
            _restore(saved, net, method, augmentation)
        if task > 0 and not mid_task:
            class_il, task_il = evaluate_tasks([task], [task])
            before["class_il"][task:] = [class_il[0]]
            before["task_il"][task:] = [task_il[0]]
        method.begin_task(task)
        if mid_task:  # again: Joint has just re-initialised the network
            _restore(saved, net, method, augmentation)
        if probe is not None:
            probe.begin_task(task)
        indices = _training_indices(benchmark, method.training_tasks(task))
        stream = None  # the task's data as they are: shuffled through their indices
        if method.changes_training_data():
            stream = method.training_data(task, TaskData(benchmark.train_inputs[indices],
                                                         benchmark.train_labels[indices]))
            bar.total += config.n_epochs * (-(-len(stream.labels) // config.batch_size)
                                            - -(-len(indices) // config.batch_size))
        first_epoch = position["epoch"] if resuming else 0
        for epoch in range(first_epoch, config.n_epochs):
            method.optimizer.lr = learning_rate(config, epoch)
            first_batch = 0
            if resuming and epoch == first_epoch:
                data_order.set_state(saved["data_order"].to(data_order.get_state().device))
                first_batch = position["batch"]
            epoch_start_order = data_order.get_state()
            if stream is None:
                order = indices[torch.randperm(len(indices), generator=data_order,
                                               device=device)]
                images, labels = benchmark.train_inputs[order], benchmark.train_labels[order]
            else:
                order = torch.randperm(len(stream.labels), generator=data_order, device=device)
                images, labels = stream.inputs[order], stream.labels[order]

            def after_step(batch, task=task, epoch=epoch):
                run_state["steps_done"] += 1
                every = checkpointing.every_steps if checkpointing else 0
                if every and run_state["steps_done"] % every == 0:
                    save(task, epoch, batch)

            with precision():
                _run_epoch(method, images, labels, config.batch_size, bar, task, probe,
                           first_batch, after_step, run_state, observer)
        with precision():  # the task's data, in the order of its last epoch
            method.end_task(task, TaskData(images, labels))
        seen = list(range(task + 1))
        class_il, task_il = evaluate_tasks(seen, [task] * len(seen))
        matrix["class_il"][task:] = [class_il]
        matrix["task_il"][task:] = [task_il]
        run_state["task_times"][task:] = [time.perf_counter() - task_start]
        if observer is not None:
            observer.task_end(task, run_state["steps_done"],
                              {key: [list(row) for row in rows] for key, rows in matrix.items()})
        if checkpointing is not None:
            save(task + 1, 0, 0)
        bar.set_postfix_str(f"task {task + 1} class-il {sum(class_il) / len(class_il):.1f}%")
    bar.close()
    confusion = None
    if probe is not None:
        with precision():
            confusion = task_confusion(model, benchmark, predict=method.predict)

    random_init = run_state["random_init"]
    return RunResult(
        config=config,
        benchmark_source=benchmark.source,
        class_order=list(benchmark.class_order),
        accuracy_matrix=matrix,
        random_init_accuracy=random_init,
        before_task_accuracy=before,
        metrics={key: summarize(matrix[key], before[key], random_init[key]) for key in matrix},
        wall_time_s=elapsed_before + time.perf_counter() - start,
        task_times_s=run_state["task_times"],
        analysis=probe.records if probe is not None else None,
        task_confusion=confusion,
        versions={"replaymask": __version__, "torch": torch.__version__, "cpu": cpu_model(),
                  "cpu_capability": torch.backends.cpu.get_cpu_capability()},
        task_sizes=list(benchmark.task_sizes),
    )


def _snapshot(config, net, method, run_state, epoch_start_order, augmentation,
              sequence) -> dict:
    """Plain data (tensors, numbers, strings) only: loadable with weights_only=True."""
    return {
        "sequence": sequence,
        "config": json.dumps(config.to_dict(), sort_keys=True),
        "run_state": json.dumps(run_state),
        "net": net.state_dict(),
        "method": method.state_dict(),
        "data_order": epoch_start_order,  # the epoch is re-drawn from it, then skipped to
        "augmentation": augmentation.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python_rng": json.dumps(random.getstate()),
        "numpy_rng": json.dumps(np.random.get_state(legacy=False), default=_json_array),
    }


def _json_array(value):
    return value.tolist()


def _restore(saved, net, method, augmentation) -> None:
    net.load_state_dict(saved["net"])
    method.load_state_dict(saved["method"])
    augmentation.set_state(saved["augmentation"].to(augmentation.get_state().device))
    torch.set_rng_state(saved["torch_rng"])
    if saved["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
    version, internal, gauss = json.loads(saved["python_rng"])
    random.setstate((version, tuple(internal), gauss))
    numpy_state = json.loads(saved["numpy_rng"])
    numpy_state["state"]["key"] = np.array(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)


def _load_checkpoint(checkpointing, config, device) -> dict | None:
    if checkpointing is None or not checkpointing.resume:
        return None
    found = load_newest_checkpoint(checkpointing.directory, checkpointing.warn)
    if found is None:
        return None
    saved, _ = found
    written_for = json.loads(saved["config"])
    written_for.pop("dataset_options", None)  # as in the config hash: the content decides
    current = config.identity()
    differences = [key for key in sorted(set(written_for) | set(current))
                   if written_for.get(key) != current.get(key)]
    if differences:
        shown = ", ".join(f"{key} ({written_for.get(key)!r} there, {current.get(key)!r} here)"
                          for key in differences[:3])
        raise CheckpointMismatchError(
            f"the checkpoint in {checkpointing.directory} was written for a different run: "
            f"{shown}; use another --checkpoint-dir or the same settings")
    return saved


def learning_rate(config: RunConfig, epoch: int) -> float:
    """The step schedule within a task: x0.1 at each of ``config.lr_milestones`` (epochs)."""
    return config.lr * 0.1 ** sum(epoch >= milestone for milestone in config.lr_milestones)


def _training_indices(benchmark, tasks: list[int]) -> torch.Tensor:
    """The training samples of ``tasks``, as indices into the training set."""
    if not tasks:
        return torch.zeros(0, dtype=torch.long, device=benchmark.train_labels.device)
    return torch.cat([benchmark.task_indices("train", t) for t in tasks])


def _steps(benchmark, config, tasks: list[int]) -> int:
    samples = sum(len(benchmark.task_indices("train", t)) for t in tasks)
    return config.n_epochs * -(-samples // config.batch_size)


def _run_epoch(method, images, labels, batch_size, bar, task, probe, first_batch,
               after_step, run_state, observer) -> None:
    """One pass over the stream from batch ``first_batch`` on (a resumed epoch skips the
    batches it had done); ``after_step(next_batch)`` follows every step."""
    # Losses stay on the device and are read back every CHECK_EVERY steps only.
    losses = []
    image_batches, label_batches = images.split(batch_size), labels.split(batch_size)
    last = -(-len(labels) // batch_size)  # (split gives one empty batch for no data)
    for step in range(first_batch + 1, last + 1):
        losses.append(method.observe(image_batches[step - 1], label_batches[step - 1]))
        if step % CHECK_EVERY == 0 or step == last:
            mean_loss = torch.stack(losses).float().mean().item()
            if not np.isfinite(mean_loss):
                raise DivergenceError(
                    f"training diverged (loss {mean_loss}) in task {task + 1} near step {step}; "
                    "try a smaller --lr")
            bar.update(len(losses))
            losses.clear()
            if observer is not None:
                observer.loss(run_state["steps_done"] + 1, task, mean_loss)
            if probe is not None:
                probe.record(run_state["steps_done"] + 1)
                if observer is not None:
                    observer.analysis(dict(probe.records[-1]))
        after_step(step)
