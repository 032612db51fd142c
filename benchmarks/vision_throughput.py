"""Training throughput of the Seq-CIFAR-10 DER++ step: our pipeline vs a per-sample one.

    python benchmarks/vision_throughput.py [--device cpu|cuda] [--steps 20] [--warmup 3]
    python benchmarks/vision_throughput.py --device cuda --full   # the whole protocol
    python benchmarks/vision_throughput.py --methods              # every method's step

Data: SYNTHETIC, random uint8 images of CIFAR shape (3x32x32, 10 classes, 5000 per
class like CIFAR-10); accuracy on it means nothing, only speed and memory are measured.
The step: ResNet-18, stream batch 32, two replay draws of 32 (DER++, buffer 500, the DER
paper's arguments), SGD.

(a) ours: the training set on the device as uint8; batches gathered by index; crop +
    flip + normalise batched on the device for stream and replay batches; reservoir
    decisions on the host, no per-sample loops; losses never read back in the loop;
    bf16 autocast and channels-last on CUDA (the defaults there), fp32 on CPU.
(b) per-sample, as the reference framework does it: a DataLoader (2 workers) whose
    dataset turns each image into a PIL image and crops, flips, converts and normalises
    it; a buffer that inserts one sample at a time in a Python loop and transforms each
    replayed sample through PIL on the host; the loss read back (``.item()``) each step.

Both run in this process, one after the other, the same number of timed steps after
warm-up steps. Printed: stream samples per second, peak memory (CUDA: the allocator's
peak; CPU: the process's peak resident memory above its level at the phase's start,
sampled every 5 ms), and the ratio. ``--full`` instead trains the whole protocol (5
tasks x 50 epochs, evaluation included) through ``replaymask.core.training.train`` and
reports its wall time and peak memory. Results also go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from replaymask.config import resolve
from replaymask.core.methods import method_class
from replaymask.core.methods.base import TaskData
from replaymask.core.networks import default_network
from replaymask.core.run_config import RunConfig
from replaymask.data.benchmarks import Benchmark
from replaymask.data.protocols import BENCHMARKS

PROTOCOL = BENCHMARKS["seq-cifar10"].protocol
MEAN, STD = PROTOCOL.mean, PROTOCOL.std


def synthetic_cifar(per_class_train=5000, per_class_test=1000, seed=0) -> Benchmark:
    rng = np.random.default_rng(seed)
    def split(per_class):
        labels = rng.permutation(np.repeat(np.arange(10), per_class))
        images = rng.integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
        return torch.from_numpy(images), torch.from_numpy(labels).long()
    train_images, train_labels = split(per_class_train)
    test_images, test_labels = split(per_class_test)
    return Benchmark(name="seq-cifar10", task_sizes=(2,) * 5,
                     train_inputs=train_images, train_labels=train_labels,
                     test_inputs=test_images, test_labels=test_labels,
                     class_order=tuple(range(10)), source="SYNTHETIC random CIFAR-shaped data",
                     protocol=PROTOCOL)


class PeakMemory:
    """Peak memory of a phase: CUDA allocator peak, or sampled RSS above the start."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return self
        self.start = self.peak = _rss()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, _rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            self.running = False
            self.thread.join()
            self.mib = (self.peak - self.start) / 2**20


def _rss() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def derpp_config(device: str) -> RunConfig:
    return resolve(model="derpp", dataset="seq-cifar10", buffer_size=500, device=device)


# --- (a) ours -----------------------------------------------------------------------------

def ours(benchmark: Benchmark, device: torch.device, steps: int, warmup: int,
         model: str = "derpp") -> dict:
    """Steps of ``model`` in task 1, after task 0 filled its buffer (X-DER fills it at
    the end of a task; the others by reservoir)."""
    config = resolve(model=model, dataset="seq-cifar10", buffer_size=500, device=str(device))
    torch.manual_seed(0)
    data = benchmark.to(device)
    net = default_network(data).to(device)
    if config.channels_last:
        net = net.to(memory_format=torch.channels_last)
    transform = data.train_transform(torch.Generator(device=device).manual_seed(2),
                                     config.channels_last)
    method = method_class(model)(net, transform, data.class_to_task.to(device), config)
    precision = torch.autocast(device.type, dtype=torch.bfloat16,
                               enabled=config.precision == "bf16")
    first = data.task_indices("train", 0)[:2000]
    with precision:
        method.begin_task(0)
        method.buffer.add(data.train_inputs[first], data.train_labels[first],
                          data.train_labels[first] // 2,
                          logits=torch.zeros(len(first), 10, device=device))
        method.end_task(0, TaskData(data.train_inputs[first], data.train_labels[first]))
    method.begin_task(1)
    index = data.task_indices("train", 1)
    order = index[torch.randperm(len(index), device=device)]
    images, labels = data.train_inputs[order], data.train_labels[order]

    def run(first_step, count):
        total = torch.zeros((), device=device)
        for step in range(first_step, first_step + count):
            start = (step * 32) % (len(labels) - 32)
            with precision:
                total += method.observe(images[start:start + 32], labels[start:start + 32])
        return total

    run(0, warmup)
    with PeakMemory(device) as memory:
        begin = time.perf_counter()
        total = run(warmup, steps)
        total.item()  # the one read-back: waits for the device
        seconds = time.perf_counter() - begin
    return {"samples_per_s": steps * 32 / seconds, "step_ms": 1000 * seconds / steps,
            "peak_mib": memory.mib, "precision": config.precision,
            "channels_last": config.channels_last}


# --- (b) per-sample, as the reference framework ---------------------------------------------

def pil_train_transform(image: Image.Image, rng: random.Random) -> torch.Tensor:
    """RandomCrop(32, padding=4) -> RandomHorizontalFlip -> ToTensor -> Normalize."""
    padded = ImageOps.expand(image, border=4, fill=0)
    top, left = rng.randint(0, 8), rng.randint(0, 8)
    image = padded.crop((left, top, left + 32, top + 32))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return normalize(to_tensor(image))


def to_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255


def normalize(tensor: torch.Tensor) -> torch.Tensor:
    return (tensor - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)


class PerSampleDataset(torch.utils.data.Dataset):
    """Returns (augmented, label, not augmented), one PIL image at a time."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels  # images HWC uint8, as CIFAR's .data
        self.rng = random.Random(0)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        image = Image.fromarray(self.images[index], mode="RGB")
        return (pil_train_transform(image, self.rng), int(self.labels[index]),
                to_tensor(image))


class PerSampleBuffer:
    """Reservoir insertion one sample at a time; replayed samples transformed one by one."""

    def __init__(self, size: int, device: torch.device):
        self.size, self.device, self.seen = size, device, 0
        self.examples = self.labels = self.logits = None
        self.rng = random.Random(1)

    def add(self, examples, labels, logits):
        if self.examples is None:
            self.examples = torch.zeros((self.size, *examples.shape[1:]), device=self.device)
            self.labels = torch.zeros(self.size, dtype=torch.long, device=self.device)
            self.logits = torch.zeros((self.size, logits.shape[1]), device=self.device)
        for i in range(examples.shape[0]):
            slot = self.seen if self.seen < self.size else np.random.randint(0, self.seen + 1)
            self.seen += 1
            if slot < self.size:
                self.examples[slot] = examples[i].to(self.device)
                self.labels[slot] = labels[i].to(self.device)
                self.logits[slot] = logits[i].to(self.device)

    def get(self, count):
        choice = np.random.choice(min(self.seen, self.size), size=count, replace=False)
        images = [Image.fromarray((e.cpu().permute(1, 2, 0).numpy() * 255).round()
                                  .astype(np.uint8), mode="RGB")
                  for e in self.examples[choice]]
        augmented = torch.stack([pil_train_transform(i, self.rng) for i in images])
        return augmented.to(self.device), self.labels[choice], self.logits[choice]


def per_sample(benchmark: Benchmark, device: torch.device, steps: int, warmup: int,
               workers: int) -> dict:
    config = derpp_config("cpu")  # fp32, no channels-last: the reference's settings
    torch.manual_seed(0)
    net = default_network(benchmark).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=config.lr)
    index = benchmark.task_indices("train", 0)
    dataset = PerSampleDataset(benchmark.train_inputs[index].permute(0, 2, 3, 1).numpy(),
                               benchmark.train_labels[index].numpy())
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0)
    buffer = PerSampleBuffer(config.buffer_size, device)

    def step(inputs, labels, not_augmented):
        inputs, labels = inputs.to(device), labels.to(device)
        optimizer.zero_grad()
        outputs = net(inputs)
        loss = F.cross_entropy(outputs, labels)
        if buffer.seen > 0:
            replay, _, replay_logits = buffer.get(config.minibatch_size)
            loss = loss + config.method_settings.alpha * F.mse_loss(net(replay), replay_logits)
            replay, replay_labels, _ = buffer.get(config.minibatch_size)
            loss = loss + config.method_settings.beta * F.cross_entropy(net(replay),
                                                                          replay_labels)
        loss.backward()
        optimizer.step()
        buffer.add(not_augmented, labels, outputs.detach())
        return loss.item()

    batches = iter(loader)
    for _ in range(warmup):
        step(*next(batches))
    with PeakMemory(device) as memory:
        begin = time.perf_counter()
        for _ in range(steps):
            step(*next(batches))
        seconds = time.perf_counter() - begin
    return {"samples_per_s": steps * 32 / seconds, "step_ms": 1000 * seconds / steps,
            "peak_mib": memory.mib, "precision": "fp32", "loader_workers": workers}


def pipeline_only(benchmark: Benchmark, device: torch.device, steps: int, warmup: int,
                  workers: int) -> dict:
    """Only the input side of the step (stream batch, two augmented replay draws, buffer
    insertion, with fixed stand-in logits): what the network's compute hides on a GPU."""
    from replaymask.core.buffer import ReservoirBuffer

    index = benchmark.task_indices("train", 0)
    logits = torch.zeros(32, 10, device=device)
    data = benchmark.to(device)
    transform = data.train_transform(torch.Generator(device=device).manual_seed(2))
    buffer = ReservoirBuffer(500, device=device, seed=1)
    images, labels = data.train_inputs[index], data.train_labels[index]

    def ours_step(step):
        start = (step * 32) % (len(labels) - 32)
        batch, batch_labels = images[start:start + 32], labels[start:start + 32]
        outputs = [transform(batch)]
        if not buffer.is_empty():
            outputs += [transform(buffer.sample(32).examples) for _ in range(2)]
        buffer.add(batch, batch_labels, batch_labels, logits=logits)
        return outputs

    dataset = PerSampleDataset(benchmark.train_inputs[index].permute(0, 2, 3, 1).numpy(),
                               benchmark.train_labels[index].numpy())
    loader = iter(torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True,
                                              num_workers=workers, drop_last=True))
    reference = PerSampleBuffer(500, device)

    def reference_step(step):
        inputs, batch_labels, not_augmented = next(loader)
        outputs = [inputs.to(device)]
        if reference.seen > 0:
            outputs += [reference.get(32)[0] for _ in range(2)]
        reference.add(not_augmented, batch_labels, logits)
        return outputs

    result = {}
    for name, step in (("ours", ours_step), ("per_sample", reference_step)):
        for i in range(warmup):
            step(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        begin = time.perf_counter()
        for i in range(warmup, warmup + steps):
            step(i)
        if device.type == "cuda":
            torch.cuda.synchronize()
        result[name] = {"samples_per_s": steps * 32 / (time.perf_counter() - begin)}
    result["speedup"] = result["ours"]["samples_per_s"] / result["per_sample"]["samples_per_s"]
    return result


def full_protocol(benchmark: Benchmark, device: torch.device, n_epochs: int | None) -> dict:
    from replaymask.core.training import train

    config = resolve(model="derpp", dataset="seq-cifar10", buffer_size=500,
                     device=str(device), n_epochs=n_epochs)
    with PeakMemory(device) as memory:
        result = train(config, benchmark, progress=True)
    return {"wall_s": result.wall_time_s, "task_s": result.task_times_s, "peak_mib": memory.mib,
            "n_epochs": config.n_epochs, "precision": config.precision,
            "class_il_on_synthetic": result.metrics["class_il"]["average_accuracy"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per pipeline "
                        "(default: 200 on CUDA, 15 on CPU)")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--loader-workers", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="train the whole protocol instead")
    parser.add_argument("--methods", action="store_true",
                        help="instead: our step time of every method (task 1, buffer 500)")
    parser.add_argument("--n-epochs", type=int, help="with --full: epochs per task (default 50)")
    parser.add_argument("--out", type=Path, help="JSON results (default: "
                        "results/vision_throughput-<device>.json)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("vision_throughput: no CUDA device here; use --device cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    steps = args.steps or (200 if device.type == "cuda" else 15)
    warmup = args.warmup if args.warmup is not None else (20 if device.type == "cuda" else 3)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{_cpu_model()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"
    print(f"device: {name}; torch {torch.__version__}; data: SYNTHETIC CIFAR-shaped")
    benchmark = synthetic_cifar()
    record = {"device": name, "torch": torch.__version__, "data": "synthetic",
              "steps": steps, "warmup": warmup}
    if args.methods:
        record["methods"] = {}
        print(f"{'method':8} {'samples/s':>10} {'ms/step':>8}   (our pipeline, task 1)")
        for model in ("sgd", "er", "der", "derpp", "er_ace", "xder"):
            r = record["methods"][model] = ours(benchmark, device, steps, warmup, model)
            print(f"{model:8} {r['samples_per_s']:10.1f} {r['step_ms']:8.1f}")
    elif args.full:
        record["full_protocol"] = full_protocol(benchmark, device, args.n_epochs)
        full = record["full_protocol"]
        print(f"full Seq-CIFAR-10 DER++ protocol (5 tasks x {full['n_epochs']} epochs, "
              f"{full['precision']}): {full['wall_s']:.1f} s wall, "
              f"peak {full['peak_mib']:.0f} MiB")
    else:
        record["ours"] = ours(benchmark, device, steps, warmup)
        record["per_sample"] = per_sample(benchmark, device, steps, warmup, args.loader_workers)
        record["speedup"] = record["ours"]["samples_per_s"] / record["per_sample"]["samples_per_s"]
        print(f"{'pipeline':12} {'samples/s':>10} {'ms/step':>8} {'peak MiB':>9}")
        for key in ("ours", "per_sample"):
            r = record[key]
            print(f"{key:12} {r['samples_per_s']:10.1f} {r['step_ms']:8.1f} {r['peak_mib']:9.0f}")
        print(f"ours / per-sample throughput: {record['speedup']:.2f}x")
        record["input_pipeline_only"] = pipeline_only(benchmark, device, 10 * steps, warmup,
                                                      args.loader_workers)
        only = record["input_pipeline_only"]
        print(f"input pipeline alone (no network): ours "
              f"{only['ours']['samples_per_s']:.0f} samples/s, per-sample "
              f"{only['per_sample']['samples_per_s']:.0f} samples/s: {only['speedup']:.1f}x")
    kind = "-methods" if args.methods else "-full" if args.full else ""
    out = args.out or Path("results") / f"vision_throughput-{device.type}{kind}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
