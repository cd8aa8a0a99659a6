"""Reading and writing ``flownet.pkl`` files in the official RIFE layout.

Official files are the ``state_dict`` of a DDP-wrapped IFNet, so every key starts with ``module.``.
They are read with ``weights_only=True``: a pickle that would run code is refused before anything runs.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from pipeline.errors import UserError
from pipeline.fsutil import atomic_path

DDP_PREFIX = "module."
# Tensors some official files carry that only their training code used; dropped before a strict load.
TRAINING_ONLY_PREFIXES = ("teacher.", "caltime.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Plain ``{name: tensor}`` of a checkpoint, ``module.`` prefix and training-only keys removed."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err):
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
            culprit = f"it references {found.group(1)}" if found else "it holds objects other than tensors"
            raise UserError(f"checkpoint {path}: refused, loading it would run code ({culprit})") from None
        raise UserError(f"checkpoint {path}: not a readable PyTorch file ({_first_line(err)})") from None
    except Exception as err:  # torch raises many types for truncated or foreign files
        raise UserError(f"checkpoint {path}: not a readable PyTorch file (truncated or another format: "
                        f"{_first_line(err)})") from None
    if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise UserError(f"checkpoint {path}: expected a state_dict of tensors, got {type(raw).__name__}")
    state = {}
    for key, value in raw.items():
        name = key[len(DDP_PREFIX):] if key.startswith(DDP_PREFIX) else key
        if not name.startswith(TRAINING_ONLY_PREFIXES):
            state[name] = value
    return state


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    if len(text) < 8:  # e.g. a bare KeyError from a foreign pickle says little on its own
        return f"{type(err).__name__} {text}".strip()
    return text.splitlines()[0]


def load_checkpoint(path: str | Path, arch: str) -> nn.Module:
    """Build ``arch`` and load ``path`` into it with ``strict=True``; returns the model in eval mode."""
    from pipeline.models import create_model

    model = create_model(arch)
    state = read_state_dict(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong_shape:
        raise UserError(f"checkpoint {path} does not fit architecture {arch!r}: "
                        f"{_summarise('missing', missing)}{_summarise('unexpected', unexpected)}"
                        f"{_summarise('wrong shape', wrong_shape)}".rstrip("; "))
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval()


def _summarise(label: str, keys: list[str], shown: int = 3) -> str:
    if not keys:
        return ""
    more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
    return f"{len(keys)} {label} keys: {', '.join(keys[:shown])}{more}; "


def write_state_dict(state: dict[str, torch.Tensor], path: str | Path) -> None:
    """Write ``state`` atomically, with official key names (``module.`` prefix), float32, contiguous, on CPU.

    Saved through a file handle: given a path, torch.save names the archive inside after the file, and the
    temporary name would make every write of the same weights a different file (and a different DVC hash).
    """
    state = {DDP_PREFIX + k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)


def save_checkpoint(model: nn.Module, path: str | Path) -> None:
    """Write ``model``'s weights (see :func:`write_state_dict`)."""
    write_state_dict(model.state_dict(), path)
