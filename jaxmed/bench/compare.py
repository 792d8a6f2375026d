"""Side-by-side train-step results: jaxmed against its peers, and the ratio to the best peer.

Results are `jaxmed bench train-step` objects (the peers in `benchmarks/peers/` emit the
same fields). Each implementation may have run several times (rounds); its figure is
the median over its runs of their median step times. The best peer is the fastest of
all peer variants, so a slower variant can never handicap a peer.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

JAXMED = "jaxmed"


def implementation(result: dict) -> str:
    """e.g. "jaxmed", "pytorch/eager", "tensorflow/function"."""
    framework = result.get("framework", JAXMED)
    variant = result.get("variant")
    return f"{framework}/{variant}" if variant else framework


def compare(results: Sequence[dict]) -> dict:
    """Per-implementation medians, the best peer, and jaxmed / best peer.

    Args:
      results: successful train-step results (jaxmed's have no "framework" field).

    Returns:
      {"implementations": {name: {"images_per_s", "step_ms", "runs", "images_per_s_runs", "parameters"}},
       "best_peer", "ratio_jaxmed_over_best_peer", "parameters_match"}; ratio and best peer are
      None when a side is missing. `parameters_match` maps each peer to whether its
      parameter counts, network by network, equal jaxmed's (the same networks by the same names).
    """
    grouped: dict[str, list[dict]] = {}
    for result in results:
        grouped.setdefault(implementation(result), []).append(result)
    implementations = {}
    for name, runs in grouped.items():
        step_ms = statistics.median(run["step_ms"] for run in runs)
        implementations[name] = {
            "images_per_s": runs[0]["batch_size"] / (step_ms / 1e3),
            "step_ms": step_ms,
            "runs": len(runs),
            "images_per_s_runs": [run["images_per_s"] for run in runs],
            "parameters": runs[0].get("parameters"),
        }
    peers = {name: entry for name, entry in implementations.items() if name != JAXMED}
    best_peer = max(peers, key=lambda name: peers[name]["images_per_s"]) if peers else None
    ratio = None
    if best_peer and JAXMED in implementations:
        ratio = implementations[JAXMED]["images_per_s"] / peers[best_peer]["images_per_s"]
    parameters_match = {}
    if JAXMED in implementations:
        ours = implementations[JAXMED]["parameters"] or {}
        for name, entry in peers.items():
            theirs = entry["parameters"] or {}
            parameters_match[name] = _counts(ours) == _counts(theirs)
    return {"implementations": implementations, "best_peer": best_peer, "ratio_jaxmed_over_best_peer": ratio,
            "parameters_match": parameters_match}


def _counts(parameters: dict) -> dict[str, int]:
    """Parameter counts per network, without the total that some results add (it follows from the parts)."""
    return {part: count for part, count in parameters.items() if part != "total"}


def format_parameters(parameters: dict | None) -> str:
    """e.g. "generator 2328001, discriminator 705953"."""
    return ", ".join(f"{part} {count}" for part, count in _counts(parameters or {}).items()) or "?"


def format_comparison(comparison: dict) -> str:
    """The comparison as a text table, best first, with the ratio line."""
    lines = [f"{'implementation':<22s} {'images/s':>9s} {'step ms':>9s} {'runs':>5s}  parameters"]
    ranked = sorted(comparison["implementations"].items(), key=lambda item: -item[1]["images_per_s"])
    for name, entry in ranked:
        match = comparison["parameters_match"].get(name)
        flag = "" if match is None else (" (= jaxmed)" if match else " (DIFFERENT from jaxmed)")
        lines.append(f"{name:<22s} {entry['images_per_s']:9.1f} {entry['step_ms']:9.1f} {entry['runs']:5d}  "
                     f"{format_parameters(entry['parameters'])}{flag}")
    ratio = comparison["ratio_jaxmed_over_best_peer"]
    if ratio is not None:
        lines.append(f"jaxmed / best peer ({comparison['best_peer']}): {ratio:.2f}x")
    return "\n".join(lines)


def dcgan_parameter_counts(image_size: int = 128, channels: int = 1, latent_dim: int = 100,
                           base_features: int = 256) -> dict[str, int]:
    """Trainable parameters of docs/design.md's DCGAN, by formula: what every peer implementation must have.

    Generator: Dense latent -> 8*8*base (no bias) + BN(base), then per stage a 4x4
    up-sampling convolution (no bias) + BN, then a 4x4 up-sampling convolution to
    `channels` with bias. Discriminator: a 4x4 convolution channels -> first width with
    bias, then per stage a 4x4 convolution (no bias) + BN, then Dense 8*8*base -> 1 with
    bias. BN contributes a scale and a shift per channel (its running statistics are
    not parameters).
    """
    stages = (image_size // 8).bit_length() - 1
    generator_widths = [base_features >> stage for stage in range(stages)]
    generator = latent_dim * 64 * base_features + 2 * base_features
    generator += sum(16 * f_in * f_out + 2 * f_out for f_in, f_out in zip(generator_widths[:-1], generator_widths[1:]))
    generator += 16 * generator_widths[-1] * channels + channels
    discriminator_widths = [base_features >> (stages - 1 - stage) for stage in range(stages)]
    discriminator = 16 * channels * discriminator_widths[0] + discriminator_widths[0]
    discriminator += sum(16 * f_in * f_out + 2 * f_out
                         for f_in, f_out in zip(discriminator_widths[:-1], discriminator_widths[1:]))
    discriminator += 64 * base_features + 1
    return {"generator": generator, "discriminator": discriminator}
