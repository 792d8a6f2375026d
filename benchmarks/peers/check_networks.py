"""Checks that each PyTorch peer network computes what jaxmed's does: jaxmed's weights in, the same outputs out.

    benchmarks/peers/.venv/bin/python benchmarks/peers/check_networks.py              # jaxmed's Python: .venv
    ... check_networks.py --jaxmed-python /path/to/python                              # another one

Equal parameter counts (what `peers.py` checks in every run) do not prove the same network:
a padding, a flatten order or a missing activation changes the function, not the count. This
runs `jaxmed_reference.py` with jaxmed's Python (weights, inputs and training-mode outputs of
every network), loads each network's weights into its `torch_models` twin by the shared
attribute names (converting kernel layouts), runs it on the same inputs and prints the largest
difference relative to the output's size; the exit status is 1 when one exceeds `TOLERANCE`.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import torch_models  # noqa: E402

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-4  # max |torch - jaxmed| / max(1, max |jaxmed|): float32 rounding, not a different function

# `jaxmed_reference.py`'s networks -> their PyTorch twins (without dropout, like the references).
NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "dcgan128.generator": lambda: torch_models.Generator(128, common.CHANNELS, common.LATENT_DIM),
    "dcgan128.discriminator": lambda: torch_models.Discriminator(128, common.CHANNELS),
    "vae128": lambda: torch_models.VAE(128, common.CHANNELS, common.VAE_LATENT_DIM),
    "seed_cnn": lambda: torch_models.SeedCNN(128, common.CHANNELS, common.NUM_CLASSES, common.SEED_CNN_FEATURES,
                                             common.SEED_CNN_HIDDEN, dropout_rate=0.0),
    "resnet18": lambda: torch_models.ResNet18(128, common.CHANNELS, common.NUM_CLASSES, common.RESNET18_WIDTH,
                                              dropout_rate=0.0),
    "unet64": lambda: torch_models.UNet(64, common.CHANNELS, **common.UNET),
}


def _jaxmed_kind(module: nn.Module, kind: str) -> str:
    """jaxmed's name for PyTorch parameter `kind` ("weight" or "bias") of `module`."""
    if isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        return "scale" if kind == "weight" else "bias"
    return "kernel" if kind == "weight" else "bias"


def _torch_layout(module: nn.Module, kind: str, value: np.ndarray) -> np.ndarray:
    """jaxmed's parameter `value` in PyTorch's layout for parameter `kind` of `module`."""
    if kind != "weight" or isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        return value
    if isinstance(module, nn.ConvTranspose2d):
        # jaxmed's up-sampling kernel (H, W, in, out) correlates the dilated input unflipped (jaxmed.nn.upsample);
        # PyTorch's (in, out, H, W) scatters, which is the flipped correlation.
        return value[::-1, ::-1].transpose(2, 3, 0, 1)
    if isinstance(module, nn.Conv2d):
        return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    return value.T  # Linear: (in, out) -> (out, in)


def load_jaxmed_weights(model: nn.Module, arrays: dict[str, np.ndarray]) -> None:
    """Copies every parameter of `model` from jaxmed's ("param:PATH"), by name; all of jaxmed's must be used.

    Raises:
      ValueError: a parameter missing on either side, or of another shape.
    """
    params = {key.removeprefix("param:"): value for key, value in arrays.items() if key.startswith("param:")}
    used = set()
    for name, parameter in model.named_parameters():
        module_name, _, kind = name.rpartition(".")
        module = model.get_submodule(module_name)
        key = f"{module_name}.{_jaxmed_kind(module, kind)}"
        if key not in params:
            raise ValueError(f"{name}: jaxmed has no parameter {key}")
        value = _torch_layout(module, kind, params[key])
        if tuple(value.shape) != tuple(parameter.shape):
            raise ValueError(f"{name}: shape {tuple(parameter.shape)}, jaxmed's {key} gives {tuple(value.shape)}")
        with torch.no_grad():
            parameter.copy_(torch.from_numpy(np.ascontiguousarray(value)))
        used.add(key)
    if set(params) - used:
        raise ValueError(f"jaxmed parameters without a PyTorch twin: {sorted(set(params) - used)}")


def _to_torch(value: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(value)
    return tensor.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last) if tensor.ndim == 4 else tensor


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    return (tensor.permute(0, 2, 3, 1) if tensor.ndim == 4 else tensor).numpy()


def relative_differences(reference_dir: Path) -> dict[str, float]:
    """{network: max |torch - jaxmed| / max(1, max |jaxmed|) over its outputs} for every network."""
    differences = {}
    for name, build in NETWORKS.items():
        with np.load(reference_dir / f"{name}.npz") as stored:
            arrays = dict(stored)
        model = build().to(memory_format=torch.channels_last).train()
        load_jaxmed_weights(model, arrays)
        inputs = [_to_torch(arrays[f"input:{index}"]) for index in range(sum(k.startswith("input:") for k in arrays))]
        outputs = model(*inputs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        worst = 0.0
        for index, output in enumerate(outputs):
            expected = arrays[f"output:{index}"]
            scale = max(1.0, float(np.abs(expected).max()))
            worst = max(worst, float(np.abs(_to_numpy(output) - expected).max()) / scale)
        differences[name] = worst
    return differences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jaxmed-python", default=str(common.REPO / ".venv" / "bin" / "python"),
                        help="the Python that has jaxmed (default: the repository's .venv)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jaxmed_reference_") as folder:
        subprocess.run([args.jaxmed_python, str(HERE / "jaxmed_reference.py"), folder], check=True)
        differences = relative_differences(Path(folder))
    for name, difference in differences.items():
        verdict = "same" if difference <= TOLERANCE else "DIFFERENT"
        print(f"{name:<24s} max relative difference {difference:.1e}  {verdict}")
    sys.exit(0 if all(difference <= TOLERANCE for difference in differences.values()) else 1)


if __name__ == "__main__":
    main()
