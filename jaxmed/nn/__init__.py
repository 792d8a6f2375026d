"""Layers shared by the models.

`UpsampleConv` / `upsample_conv`: a 4x4 stride-2 "SAME" transposed convolution
(the same function and parameters as `nnx.ConvTranspose`) computed in sub-pixel
form, whose gradients are fast on XLA:CPU.

`BatchNorm` / `batch_norm`: `nnx.BatchNorm` with a hand-written training-mode
gradient (two fused passes instead of XLA's many).

`GroupNorm` / `group_norm`: `nnx.GroupNorm` with a hand-written gradient whose sums
take one read of the activations per pair.

`MaxPool` / `max_pool`: max pooling computed as a maximum of strided views, or by
oneDNN's library's kernel, whose gradients avoid XLA:CPU's slow `select_and_scatter`.

`onednn`: the convolutions computed by oneDNN on XLA:CPU; `conv_backend` chooses,
per model, between them and XLA's own (`resolve_conv_backend`, `conv_general_dilated_for`),
and what a reduced precision computes in between (`mixed_precision_dtypes`) and where a
layer computes in float32 after all (`convolution_dtype`, `dense_dtype`).
"""

from jaxmed.nn.batch_norm import BatchNorm, batch_norm
from jaxmed.nn.conv_backend import (CONV_BACKENDS, ConvBackend, conv_general_dilated_for, convolution_dtype,
                                    dense_dtype, mixed_precision_dtypes, resolve_conv_backend)
from jaxmed.nn.group_norm import GroupNorm, group_norm
from jaxmed.nn.pooling import MaxPool, max_pool
from jaxmed.nn.upsample import CONV3X3_MAX_OUT_FEATURES, UpsampleConv, UpsampleMethod, upsample_conv

__all__ = ["BatchNorm", "CONV3X3_MAX_OUT_FEATURES", "CONV_BACKENDS", "ConvBackend", "GroupNorm", "MaxPool",
           "UpsampleConv", "UpsampleMethod", "batch_norm", "conv_general_dilated_for", "convolution_dtype",
           "dense_dtype", "group_norm", "max_pool", "mixed_precision_dtypes", "resolve_conv_backend", "upsample_conv"]
