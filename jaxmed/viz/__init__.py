"""Figures, one module per audience; import the module you need, e.g. ``from jaxmed.viz import generation``.

`figures` holds the shared plumbing (headless figures, PNG output) and image grids;
`generation` the figures of a generative model's training, `classification` those of
a classifier run, `studies` the augmentation-study summary, `evaluation` those of
``jaxmed evaluate``, and `inspection` the example montage of ``jaxmed data inspect``.
Images are NHWC floats in [-1, 1] throughout.
"""
