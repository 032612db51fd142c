"""replaymask: replay-based continual learning with the General Masked Softmax (GMS)."""

__version__ = "0.1.0"

from .core.gms import class_to_task_layout, gms_cross_entropy, live_classes  # noqa: E402

__all__ = ["__version__", "gms_cross_entropy", "live_classes", "class_to_task_layout"]
