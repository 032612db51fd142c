"""Your own data, measured: a benchmark from tensors against the built-in one, and an image
folder's first and cached reads.

    python benchmarks/own_data.py [--rounds 5] [--out results/own_data.json]

Three measurements, one at a time (run it on an otherwise idle machine):

1. **Step time.** Seq-MNIST's exact tensors brought as a user's benchmark
   (``benchmark_from_tensors``) against ``--dataset seq-mnist``: ER (buffer 200) and DER++
   (buffer 200), one thread, the two taking turns, ``--rounds`` runs each; the median
   time per training step (a run's wall time over its steps, evaluation included) and
   the ratio. Their accuracy matrices must be equal (they are the same run).
2. **Folder.** The 70,000 MNIST images written as 28x28 PNGs into a temporary tree, then
   ``benchmark_from_folder`` on it twice with a fresh cache: the first read decodes every
   file, the second loads the cache.
3. **Peak memory.** Each in a fresh process: an ER run on ``--dataset seq-fmnist``, and
   the same run on Fashion-MNIST read from Debian's IDX files with NumPy (as
   docs/own-data.md does) and brought with ``benchmark_from_tensors``; the difference of
   their peak resident memory (``VmHWM``) against the size of the tensors, and what
   ``benchmark_from_tensors`` itself adds to the resident memory.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FASHION = Path("/usr/share/datasets/fashion-mnist")
METHODS = {"er": {"model": "er", "buffer_size": 200, "lr": 0.1, "minibatch_size": 10},
           "derpp": {"model": "derpp", "buffer_size": 200, "lr": 0.03, "minibatch_size": 10,
                     "alpha": 0.2, "beta": 1.0}}


def step_times(rounds: int) -> dict:
    import replaymask
    from replaymask.data.benchmarks import load_benchmark

    builtin = load_benchmark("seq-mnist", download=False)
    own = replaymask.benchmark_from_tensors(
        "my-mnist", train=(builtin.train_inputs, builtin.train_labels),
        test=(builtin.test_inputs, builtin.test_labels), tasks=5, n_epochs=1, batch_size=10)
    steps = sum(-(-len(builtin.task_indices("train", t)) // 10) for t in range(5))
    found = {}
    for name, settings in METHODS.items():
        times = {"seq-mnist": [], "from tensors": []}
        matrices = {}
        for _ in range(rounds):
            for label, dataset in (("seq-mnist", "seq-mnist"), ("from tensors", own)):
                result = replaymask.run(dataset=dataset, seed=0, threads=1, progress=False,
                                        **settings)
                times[label].append(result.wall_time_s / steps * 1e6)
                matrices[label] = result.accuracy_matrix
        medians = {label: statistics.median(values) for label, values in times.items()}
        found[name] = {"steps": steps, "us_per_step": times, "median_us_per_step": medians,
                       "ratio": medians["from tensors"] / medians["seq-mnist"],
                       "same_accuracy_matrices": matrices["seq-mnist"] == matrices["from tensors"]}
        print(f"{name}: seq-mnist {medians['seq-mnist']:.0f} us/step, from tensors "
              f"{medians['from tensors']:.0f} us/step, ratio {found[name]['ratio']:.3f}, "
              f"same results: {found[name]['same_accuracy_matrices']}", flush=True)
    return found


def folder_reads() -> dict:
    import numpy as np
    from PIL import Image

    import replaymask
    from replaymask.data.benchmarks import load_benchmark

    mnist = load_benchmark("seq-mnist", download=False)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mnist-png"
        start = time.perf_counter()
        count = 0
        for split, inputs, labels in (("train", mnist.train_inputs, mnist.train_labels),
                                      ("test", mnist.test_inputs, mnist.test_labels)):
            for label in range(10):
                (root / split / str(label)).mkdir(parents=True)
            for i, (image, label) in enumerate(zip(inputs.numpy(), labels.tolist(),
                                                   strict=True)):
                Image.fromarray(np.ascontiguousarray(image), "L").save(
                    root / split / str(label) / f"{i:05d}.png")
                count += 1
        written = time.perf_counter() - start
        cache = Path(tmp) / "cache"
        times = []
        for _ in range(2):
            start = time.perf_counter()
            bench = replaymask.benchmark_from_folder("mnist-png", root, tasks=5, progress=False,
                                                     cache_dir=cache)
            times.append(time.perf_counter() - start)
        same = sorted(bench.train_inputs.reshape(len(bench.train_inputs), -1).sum(1).tolist()) \
            == sorted(mnist.train_inputs.reshape(len(mnist.train_inputs), -1).int().sum(1)
                      .tolist())
    found = {"images": count, "write_s": written, "first_read_s": times[0],
             "cached_read_s": times[1], "same_pixels": same}
    print(f"folder: {count} PNGs written in {written:.1f} s; first read {times[0]:.1f} s, "
          f"cached read {times[1]:.2f} s; same images: {same}", flush=True)
    return found


def read_idx(path: Path):
    import numpy as np

    with gzip.open(path) as file:
        data = file.read()
    dims = data[3]
    shape = np.frombuffer(data, ">u4", count=dims, offset=4).astype(int)
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def memory_now() -> tuple[int, int]:
    """(resident, peak resident) bytes of this process's memory, from /proc (the peak of
    this program only: getrusage's would include the parent's before exec)."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024)


def memory_probe(which: str) -> None:
    """In this process: one ER run, then print its peak resident memory (and the tensors'
    size, and for the user's path the resident memory before and after
    ``benchmark_from_tensors``) as JSON."""
    import torch  # noqa: F401 (imported first: its ~200 MiB are no part of the comparison)

    import replaymask

    found = {"tensor_bytes": 0}
    if which == "builtin":
        dataset = "seq-fmnist"
    else:
        train = (read_idx(FASHION / "train-images-idx3-ubyte.gz"),
                 read_idx(FASHION / "train-labels-idx1-ubyte.gz"))
        test = (read_idx(FASHION / "t10k-images-idx3-ubyte.gz"),
                read_idx(FASHION / "t10k-labels-idx1-ubyte.gz"))
        found["tensor_bytes"] = sum(array.nbytes for array in (*train, *test))
        found["resident_with_arrays"] = memory_now()[0]
        dataset = replaymask.benchmark_from_tensors("my-fmnist", train=train, test=test,
                                                    tasks=5, n_epochs=1, batch_size=10)
        found["resident_with_benchmark"] = memory_now()[0]
    result = replaymask.run(dataset=dataset, seed=0, threads=1, progress=False,
                            **METHODS["er"])
    found["peak_bytes"], found["class_il"] = memory_now()[1], result.class_il
    print(json.dumps(found))


def peak_memory() -> dict:
    found = {}
    for which in ("builtin", "tensors"):
        done = subprocess.run([sys.executable, __file__, "--memory-probe", which],
                              capture_output=True, text=True, check=True)
        found[which] = json.loads(done.stdout.strip().splitlines()[-1])
    extra = found["tensors"]["peak_bytes"] - found["builtin"]["peak_bytes"]
    size = found["tensors"]["tensor_bytes"]
    made = found["tensors"]["resident_with_benchmark"] - found["tensors"]["resident_with_arrays"]
    found["extra_bytes"], found["extra_over_tensors"] = extra, extra / size
    found["benchmark_from_tensors_bytes"] = made
    print(f"memory: built-in peak {found['builtin']['peak_bytes'] / 2**20:.0f} MiB, from "
          f"tensors {found['tensors']['peak_bytes'] / 2**20:.0f} MiB: {extra / 2**20:+.0f} MiB, "
          f"{extra / size:+.2f}x the tensors' {size / 2**20:.0f} MiB; benchmark_from_tensors "
          f"itself {made / 2**20:+.1f} MiB ({made / size:.2f}x); same Class-IL: "
          f"{found['builtin']['class_il'] == found['tensors']['class_il']}", flush=True)
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/own_data.json"))
    parser.add_argument("--memory-probe", choices=["builtin", "tensors"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe)
        return 0
    import torch

    found = {"measured": time.strftime("%Y-%m-%d"), "machine": platform.processor() or
             platform.machine(), "torch": torch.__version__, "rounds": args.rounds,
             "step_time": step_times(args.rounds), "folder": folder_reads(),
             "memory": peak_memory()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(found, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
