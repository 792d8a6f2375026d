"""Evaluation metrics: `jaxmed.metrics.classification` scores classifiers against a held-out real test set."""
