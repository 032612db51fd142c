"""Backbone networks of the standard benchmarks."""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """The Seq-MNIST MLP of the DER paper: input -> 100 -> ReLU -> 100 -> ReLU -> classes."""

    def __init__(self, input_size: int = 784, hidden_size: int = 100, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_size, hidden_size),
            nn.ReLU(),
            nn.Linear(hidden_size, hidden_size),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(hidden_size, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases, as in the reference implementation."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                bound = math.sqrt(3.0) * math.sqrt(2.0 / (module.in_features + module.out_features))
                nn.init.uniform_(module.weight, -bound, bound)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The same ops as self.classifier(self.features(x)), without the module-call
        # machinery around each layer (a quarter of a small batch's forward time on a CPU);
        # so hooks registered on the inner layers are not called.
        _, first, _, second, _ = self.features
        hidden = torch.relu(F.linear(x.flatten(1), first.weight, first.bias))
        hidden = torch.relu(F.linear(hidden, second.weight, second.bias))
        return F.linear(hidden, self.classifier.weight, self.classifier.bias)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """The reduced-stem ResNet-18 of the DER paper and Mammoth, for 32x32 (and 64x64) inputs.

    A 3x3 stride-1 stem with ``base_filters`` channels and no max-pool, four stages of two
    basic blocks (``base_filters`` x 1, 2, 4, 8; strides 1, 2, 2, 2), global average
    pooling and one linear classifier over all classes. With 64 filters and 10 classes it
    has 11,173,962 parameters.
    """

    def __init__(self, num_classes: int = 10, base_filters: int = 64, in_channels: int = 3):
        super().__init__()
        widths = [base_filters * factor for factor in (1, 2, 4, 8)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, base_filters, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(base_filters),
            nn.ReLU(),
        )
        stages, in_planes = [], base_filters
        for width, stride in zip(widths, (1, 2, 2, 2), strict=True):
            stages.append(nn.Sequential(BasicBlock(in_planes, width, stride),
                                        BasicBlock(width, width, 1)))
            in_planes = width
        self.features = nn.Sequential(self.stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(widths[-1], num_classes)

    def reset_parameters(self) -> None:
        """PyTorch's default initialisation of every layer, as in the reference."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@contextmanager
def frozen_batchnorm_stats(net: nn.Module):
    """Forward passes inside use batch statistics but leave BatchNorm's running
    statistics untouched (for auxiliary passes that must not shift the test-time model)."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    tracking = [m.track_running_stats for m in norms]
    for module in norms:
        module.track_running_stats = False
    try:
        yield
    finally:
        for module, track in zip(norms, tracking, strict=True):
            module.track_running_stats = track
