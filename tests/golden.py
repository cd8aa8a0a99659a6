"""Inputs and weights behind the golden outputs in ``tests/fixtures/`` (see ``tests/fixtures/make_golden.py``).

The golden outputs were produced once by the official implementations. The weights of the 4.x networks
are not stored: they are a fixed function of each tensor's name and shape, so a test rebuilds exactly
the weights the official code was run with.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import torch

FIXTURES = Path(__file__).parent / "fixtures"
FRAMES = FIXTURES / "golden_frames.npz"  # two real frames (a crop of the demo clip bikes.mp4)
HDV3_GOLDEN = FIXTURES / "hdv3_golden.npz"
V4_GOLDEN = FIXTURES / "v4_golden.npz"
WEIGHT_SEED = 2024
# (timestep, scale) cases each 4.x network is checked at; HDv3 at (0.5, 1.0) and (0.5, 0.5).
V4_CASES = ((0.5, 1.0), (0.3, 0.5))
HDV3_SCALES = (1.0, 0.5)


def case_key(arch: str, timestep: float, scale: float) -> str:
    return f"{arch}|t={timestep}|scale={scale}"


def seeded_state(shapes: dict[str, tuple[int, ...]], seed: int = WEIGHT_SEED) -> dict[str, torch.Tensor]:
    """Weights for every ``name: shape``, each drawn from a generator seeded by the name alone.

    Scaled like a default initialisation (uniform in +-1/sqrt(fan-in)), so flows stay a few pixels and the
    warps are exercised without leaving the frame; per-channel scales (``beta``) near 1.
    """
    state = {}
    for name, shape in shapes.items():
        gen = torch.Generator().manual_seed(seed + zlib.crc32(name.encode()))
        draw = torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1
        if name.endswith("beta"):
            value = 1 + 0.2 * draw
        elif len(shape) == 1:
            value = 0.1 * draw
        else:
            value = draw / math.sqrt(math.prod(shape[1:]))
        state[name] = value.float()
    return state


def real_frames() -> tuple[np.ndarray, np.ndarray]:
    data = np.load(FRAMES)
    return data["img0"], data["img1"]


def as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0


def as_image(batch: torch.Tensor) -> np.ndarray:
    return batch[0].permute(1, 2, 0).numpy()
