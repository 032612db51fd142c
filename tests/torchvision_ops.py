"""Lets torchvision (and so avalanche-lib) import beside a CPU-only torch whose matching
torchvision wheel is a CUDA build. Test and benchmark environment only: never imported by
replaymask itself."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_KEEP_ALIVE = []  # a torch.library.Library drops its definitions when collected


def declare_torchvision_ops_if_they_cannot_load() -> None:
    """If torchvision is installed but its compiled operators cannot load beside this torch,
    declare the schemas of the two operators its Python side registers fake kernels for;
    otherwise do nothing.

    Why: PyPI has only a CUDA build of torchvision 0.28.0 (torch 2.13); beside the CPU torch
    its ``_C`` library fails to load, and ``import torchvision`` then stops at
    ``register_fake("torchvision::nms")`` with "operator torchvision::nms does not exist".
    With the schemas declared, everything but those compiled detection operators (which
    Avalanche's classification code never calls) works. A user's matching torch/torchvision
    pair loads its operators, and this function leaves it alone.
    """
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    import torch

    compiled = [path for path in Path(spec.origin).parent.glob("_C*")
                if path.suffix in (".so", ".pyd")]
    try:
        for library in compiled:
            torch.ops.load_library(str(library))  # what torchvision does first on import
        if compiled:
            return
    except OSError:
        pass
    try:
        torch.ops.torchvision.nms  # noqa: B018 (declared already, by an earlier call)
        return
    except (AttributeError, RuntimeError):
        pass
    library = torch.library.Library("torchvision", "FRAGMENT")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _KEEP_ALIVE.append(library)
