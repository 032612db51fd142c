"""Data: benchmark protocols, data-set sources and readers, the array cache, tasks of
tensors and the batched augmentation."""
