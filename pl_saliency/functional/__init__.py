"""Every metric as pure functions: tensors in, tensors out; no state, no Lightning."""

from pl_saliency.functional.deletion import deletion_auc, insertion_auc

__all__ = ["deletion_auc", "insertion_auc"]
