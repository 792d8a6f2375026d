"""Evaluation metrics: `jaxmed.metrics.classification` scores classifiers against a held-out real test set;
`jaxmed.metrics.generative` compares generated with real images (FID, KID, precision/recall, copies);
`jaxmed.metrics.pixels` compares their pixel-value distributions."""
