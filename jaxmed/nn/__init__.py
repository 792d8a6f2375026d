"""Layers shared by the models.

`UpsampleConv` / `upsample_conv`: a 4x4 stride-2 "SAME" transposed convolution
(the same function and parameters as `nnx.ConvTranspose`) computed in sub-pixel
form, whose gradients are fast on XLA:CPU.

`MaxPool` / `max_pool`: max pooling computed as a maximum of strided views, whose
gradient avoids XLA:CPU's slow `select_and_scatter`.
"""

from jaxmed.nn.pooling import MaxPool, max_pool
from jaxmed.nn.upsample import CONV3X3_MAX_OUT_FEATURES, UpsampleConv, UpsampleMethod, upsample_conv

__all__ = ["CONV3X3_MAX_OUT_FEATURES", "MaxPool", "UpsampleConv", "UpsampleMethod", "max_pool", "upsample_conv"]
