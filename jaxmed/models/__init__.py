"""The models, one family per module: `dcgan` (Generator, Discriminator), `vae` (VAE) and `classifier`
(SeedCNN, ResNet18).

Every model takes `dtype` (computation precision) and `conv_backend` (which kernels compute its
convolutions, see `jaxmed.nn.conv_backend`); parameters are float32 and the same on every backend.
"""
