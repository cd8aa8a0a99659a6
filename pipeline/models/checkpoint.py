"""Reading and writing ``flownet.pkl`` files in the official RIFE layout.

Official files are the ``state_dict`` of a DDP-wrapped IFNet, so every key starts with ``module.``.
They are read with ``weights_only=True``: a pickle that would run code is refused before anything runs.
Tensors that only the official training code used (``teacher.*`` of the 4.x files, ``caltime.*`` of 4.26)
are set apart as ``extras``: never loaded into a network, but written back unchanged next to the fine-tuned
weights, so our file has the same keys as the one the user brought.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import UserError
from pipeline.core.source_paths import local_path

DDP_PREFIX = "module."
# Tensors some official files carry that only their training code used; dropped before a strict load.
TRAINING_ONLY_PREFIXES = ("teacher.", "caltime.")


@dataclass
class Checkpoint:
    """A checkpoint's tensors under plain names (no ``module.``), the network's apart from the extras."""

    state: dict[str, torch.Tensor]
    extras: dict[str, torch.Tensor] = field(default_factory=dict)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Plain ``{name: tensor}`` of a checkpoint, ``module.`` prefix and training-only keys removed."""
    return read_checkpoint(path).state


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read ``path`` safely; one ``UserError`` line for a URL, a folder, or a missing, unsafe, truncated or foreign
    file."""
    path = local_path(path, "checkpoint")
    if not path.is_file():
        raise UserError(f"checkpoint {path}: no such file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported operand" in str(err) and not _starts_like_a_pickle(path):  # text or another format
            raise UserError(f"checkpoint {path}: not a readable PyTorch file (neither a zip archive nor a "
                            "pickle: text or another format)") from None
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
    checkpoint = Checkpoint({})
    for key, value in raw.items():
        name = key[len(DDP_PREFIX):] if key.startswith(DDP_PREFIX) else key
        (checkpoint.extras if name.startswith(TRAINING_ONLY_PREFIXES) else checkpoint.state)[name] = value
    if not checkpoint.state:
        raise UserError(f"checkpoint {path}: holds only training-only tensors ({', '.join(list(raw)[:3])})")
    return checkpoint


def _starts_like_a_pickle(path: Path) -> bool:
    """torch.save writes a zip archive or a pickle of protocol 2 or higher, which starts with PROTO (0x80)."""
    with open(path, "rb") as fh:
        return fh.read(1) == b"\x80"


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    if len(text) < 8:  # e.g. a bare KeyError from a foreign pickle says little on its own
        return f"{type(err).__name__} {text}".strip()
    return text.splitlines()[0]


def mismatches(state: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> dict[str, list[str]]:
    """Keys of ``state`` missing, unexpected or of the wrong shape for a network with ``expected`` shapes."""
    return {"missing": sorted(set(expected) - set(state)),
            "unexpected": sorted(set(state) - set(expected)),
            "wrong shape": sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != expected[k])}


def describe(found: dict[str, list[str]], shown: int = 3) -> str:
    """``2 missing keys: a, b; 1 wrong shape keys: c`` (empty when nothing mismatches)."""
    return "; ".join(_summarise(label, keys, shown) for label, keys in found.items() if keys)


def _summarise(label: str, keys: list[str], shown: int) -> str:
    more = f" (+{len(keys) - shown} more)" if len(keys) > shown else ""
    return f"{len(keys)} {label} keys: {', '.join(keys[:shown])}{more}"


def write_state_dict(state: dict[str, torch.Tensor], path: str | Path,
                     extras: dict[str, torch.Tensor] | None = None, prefix: str = DDP_PREFIX) -> None:
    """Write ``state`` (then ``extras``) atomically, with official key names (``prefix``: ``module.``, or ``""``
    for plain names), float32, contiguous, on CPU.

    Saved through a file handle: given a path, torch.save names the archive inside after the file, and the
    temporary name would make every write of the same weights a different file (and a different DVC hash).
    """
    merged = {**state, **(extras or {})}
    state = {prefix + k: v.detach().to("cpu", torch.float32).contiguous() for k, v in merged.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(state, handle)


def save_checkpoint(model: nn.Module, path: str | Path, extras: dict[str, torch.Tensor] | None = None) -> None:
    """Write ``model``'s weights and the ``extras`` of the checkpoint it came from (see :func:`write_state_dict`)."""
    write_state_dict(model.state_dict(), path, extras)
