"""Backbone networks of the standard benchmarks."""

from __future__ import annotations

import math

import torch
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
        return self.classifier(self.features(x))
