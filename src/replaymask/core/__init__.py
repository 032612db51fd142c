"""The learning core: the loss, the buffer, the methods, the training loop, evaluation,
metrics and checkpoints."""
