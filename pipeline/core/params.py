"""params.yaml, loaded once into typed, frozen objects (one dataclass per section).

Every key is required (params.yaml is the one place hyper-parameters live); :func:`pipeline.core.schema.build`
checks each one against its type and the marker on its field, for every section, whoever loads the file. The
values that must agree with each other within a section (``train.warmup_steps`` below ``train.steps``) are checked
only for the sections the caller reads (:func:`check_sections`): a short trial run's ``train`` settings never stop
``extract``. Any mistake stops with one line naming the key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from pipeline.core.errors import UserError
from pipeline.core.paths import PARAMS_FILE
from pipeline.core.schema import Span, WordOrNumber, bounds, build, choice, one_or_many, span, to_steps

# train.arch: "auto" (recognised from the checkpoint) or one of pipeline.models.ARCHITECTURES (a test keeps
# the two lists equal; params stay importable without torch).
ARCH_NAMES = ("auto", "hdv3", "4.6", "4.18", "4.22", "4.22.lite", "4.25", "4.26")
# Names of the evaluation methods and metrics (the registries in pipeline.scoring.interpolators and
# pipeline.scoring.metrics, which import torch and OpenCV; a test checks that these lists match them).
METHODS = ("finetuned", "pretrained", "repeat", "blend", "dis_flow", "ffmpeg_mci")
METRICS = ("psnr", "ssim", "psnr_y", "ssim_matlab", "sharpness")
REQUIRED_METHODS = ("finetuned", "pretrained")  # the comparison the stage exists for
REQUIRED_METRICS = ("psnr", "ssim")  # the headline pair in metrics.json; the plots and the ranking of examples use psnr

SCHEDULES = ("constant", "warmup_constant", "warmup_cosine", "linear", "step", "exponential", "polynomial",
             "cosine_restarts", "cyclic", "one_cycle", "plateau")
# train.mixed_precision and evaluate.mixed_precision: float32 throughout, or autocast to bfloat16 or float16
# (pipeline.models.precision maps them to torch's types)
PRECISIONS = ("no", "bf16", "fp16")
# train.keep_by: the best val PSNR; the best val VMAF; the best val PSNR among validations whose VMAF is at most
# train.vmaf_tolerance below the pretrained weights' (step 0)
KEEP_BY = ("psnr", "vmaf", "psnr_within_vmaf")
# the schedules that start with train.warmup_steps (the others ignore it; pipeline.training.schedules)
WARMUP_SCHEDULES = tuple(s for s in SCHEDULES if s not in ("constant", "cyclic", "one_cycle"))


@dataclass(frozen=True)
class Base:
    seed: int = field(metadata=bounds(0))  # the run's draws: augment's views, the batch order, torch's generators


@dataclass(frozen=True)
class Sources:
    videos: str  # data/demo (the demo corpus) or a folder of the user's own clips
    checkpoint: str  # a path to a flownet.pkl, or to a registry entry in checkpoints/ (downloaded by fetch)


@dataclass(frozen=True)
class Extract:
    # frames between I0 and the middle target (I1 is 2 * gap after I0); a list mixes several gaps in every split
    gap: tuple[int, ...] = field(metadata={**bounds(1), **one_or_many()})
    timesteps: str = field(metadata=choice("middle", "all"))  # targets: the middle frame, or every frame between
    stride: int = field(metadata=bounds(1))  # frames between the starts of consecutive I0
    max_per_clip: int = field(metadata=bounds(0))  # kept (I0, I1) pairs per clip and split; 0 = no cap
    split_by: str = field(metadata=choice("time", "clip", "blocks"))  # segments, whole clips, or dealt blocks
    val_fraction: float = field(metadata=bounds(0.0, 0.5, hi_open=True))
    test_fraction: float = field(metadata=bounds(0.0, 0.9, lo_open=True))
    guard_frames: int = field(metadata=bounds(0))  # frames left out between splits of one clip
    block_frames: int = field(metadata=bounds(8))  # split_by: blocks: frames per block (guard frames included)
    cut_threshold: float = field(metadata=bounds(0.0, 1.0, lo_open=True))
    static_threshold: float = field(metadata=bounds(0.0, 1.0, hi_open=True))
    duplicate_threshold: float = field(metadata=bounds(0.0, 1.0, hi_open=True))
    # how far a target's true timestep (from the frames' timestamps) may be from its nominal one; beyond it the
    # triplet is dropped as uneven_timing (variable frame rate footage, frames left out)
    timestep_tolerance: float = field(metadata=bounds(0.0, 0.5))
    skip_unreadable: bool  # skip (and report) bad files instead of stopping
    split_seed: int = field(metadata=bounds(0))  # the deal of blocks (or clips) to the splits


@dataclass(frozen=True)
class Augment:
    # an upper bound: a smaller clip is cropped at the largest multiple of 32 that fits
    crop: int = field(metadata=bounds(64))
    views_per_triplet: int = field(metadata=bounds(1))  # rows of the plan per train triplet (no pixels stored)
    hflip: float = field(metadata=bounds(0.0, 1.0))
    vflip: float = field(metadata=bounds(0.0, 1.0))
    temporal_reverse: float = field(metadata=bounds(0.0, 1.0))
    rotate: float = field(metadata=bounds(0.0, 1.0))  # rotation by 90, 180 or 270 degrees (equally likely)
    channel_reverse: float = field(metadata=bounds(0.0, 1.0))
    jitter: float = field(metadata=bounds(0.0, 1.0))  # photometric jitter (brightness and contrast)
    jitter_strength: float = field(metadata=bounds(0.0, 0.5))  # factors drawn from [1 - s, 1 + s]
    downscale: float = field(metadata=bounds(0.0, 1.0))  # probability of shrinking the frames before the crop
    downscale_min: float = field(metadata=bounds(0.0, 1.0, lo_open=True))  # factor drawn from [downscale_min, 1]


@dataclass(frozen=True)
class Loss:
    laplacian: float = field(metadata=bounds(0.0))  # Laplacian-pyramid L1 on the student's prediction
    teacher: float = field(metadata=bounds(0.0))  # the same on the teacher (block_tea) prediction
    distill: float = field(metadata=bounds(0.0))  # flow distillation from teacher to student
    # terms that keep detail, on the student's prediction (0 = off, not computed: RIFE's loss exactly)
    census: float = field(metadata=bounds(0.0))  # soft census (ternary) of the 7x7 neighbourhood on grey
    gradient: float = field(metadata=bounds(0.0))  # L1 between the finite differences (edges)
    charbonnier: float = field(metadata=bounds(0.0))  # sqrt(d^2 + eps^2) - eps per pixel


@dataclass(frozen=True)
class WarmupCosineOpts:
    floor: float = field(metadata=bounds(0.0, 1.0))  # final rate as a fraction of lr (RIFE: 3e-6 / 3e-4 = 0.01)


@dataclass(frozen=True)
class LinearOpts:
    end: float = field(metadata=bounds(0.0, 1.0))  # final rate as a fraction of lr


@dataclass(frozen=True)
class StepOpts:
    milestones: tuple[Span, ...] = field(metadata=span())  # steps (or fractions of the run) where the rate drops
    factor: float = field(metadata=bounds(0.0, 1.0, lo_open=True))


@dataclass(frozen=True)
class ExponentialOpts:
    gamma: float = field(metadata=bounds(0.0, 1.0, lo_open=True))  # factor per step after warmup


@dataclass(frozen=True)
class PolynomialOpts:
    power: float = field(metadata=bounds(0.0, lo_open=True))
    end: float = field(metadata=bounds(0.0, 1.0))


@dataclass(frozen=True)
class CosineRestartsOpts:
    period: Span = field(metadata=span())  # length of the first cycle
    mult: int = field(metadata=bounds(1))  # each cycle this many times longer than the one before
    floor: float = field(metadata=bounds(0.0, 1.0))


@dataclass(frozen=True)
class CyclicOpts:
    mode: str = field(metadata=choice("triangular", "triangular2", "exp_range"))
    base: float = field(metadata=bounds(0.0, 1.0))  # lowest rate as a fraction of lr
    period: Span = field(metadata=span())  # steps from the lowest rate to lr (as many back down)
    gamma: float = field(metadata=bounds(0.0, 1.0, lo_open=True))  # exp_range: amplitude x gamma ** step


@dataclass(frozen=True)
class OneCycleOpts:
    pct_start: float = field(metadata=bounds(0.0, 1.0, lo_open=True, hi_open=True))
    div_factor: float = field(metadata=bounds(1.0))
    final_div_factor: float = field(metadata=bounds(1.0))


@dataclass(frozen=True)
class PlateauOpts:
    factor: float = field(metadata=bounds(0.0, 1.0, lo_open=True, hi_open=True))
    patience: int = field(metadata=bounds(0))  # validations without improvement before lowering the rate
    threshold: float = field(metadata=bounds(0.0))  # dB of val PSNR that count as an improvement
    floor: float = field(metadata=bounds(0.0, 1.0))


@dataclass(frozen=True)
class Schedules:
    warmup_cosine: WarmupCosineOpts
    linear: LinearOpts
    step: StepOpts
    exponential: ExponentialOpts
    polynomial: PolynomialOpts
    cosine_restarts: CosineRestartsOpts
    cyclic: CyclicOpts
    one_cycle: OneCycleOpts
    plateau: PlateauOpts


@dataclass(frozen=True)
class Groups:
    lr_mult: dict[str, float] = field(metadata=bounds(0.0))  # group -> multiplier of lr (absent: 1)
    layer_decay: float = field(metadata=bounds(0.0, 1.0, lo_open=True))  # per block, finest to coarsest
    no_decay_bias: bool  # no weight decay on biases, PReLU slopes and scale parameters


@dataclass(frozen=True)
class Freeze:
    groups: dict[str, Span] = field(metadata=span())  # group -> step (or fraction) where it is unfrozen
    # freeze_then_all: only the finest block trains until `until`
    preset: str = field(metadata=choice("none", "freeze_then_all"))
    until: Span = field(metadata=span())


@dataclass(frozen=True)
class EarlyStopping:
    patience: int = field(metadata=bounds(0))  # validations without a val PSNR gain of min_delta; 0 = off
    min_delta: float = field(metadata=bounds(0.0))


@dataclass(frozen=True)
class Train:
    arch: str = field(metadata=choice(*ARCH_NAMES))
    steps: int = field(metadata=bounds(1))  # optimizer steps
    batch_size: int = field(metadata=bounds(1))  # per process, per micro-batch
    grad_accum_steps: int = field(metadata=bounds(1))
    schedule: str = field(metadata=choice(*SCHEDULES))
    warmup_steps: Span = field(metadata=span())
    schedules: Schedules
    groups: Groups
    freeze: Freeze
    optimizer: str = field(metadata=choice("adamw", "adam", "sgd"))
    weight_decay: float = field(metadata=bounds(0.0))
    grad_clip: float = field(metadata=bounds(0.0))  # max gradient norm; 0 = no clipping
    loss: Loss
    val_every: int = field(metadata=bounds(1))  # optimizer steps between validations
    val_max_triplets: int = field(metadata=bounds(0))  # 0 = the whole val split
    # the model's flow scale at validation, as evaluate.scale at test; auto: 1.0 up to 1080p, 0.5 above
    val_scale: WordOrNumber = field(metadata=choice("auto", 1.0, 0.5, 0.25))
    early_stopping: EarlyStopping
    keep: str = field(metadata=choice("last", "best"))  # output weights: the last step's, or the best on val
    keep_by: str = field(metadata=choice(*KEEP_BY))  # what "best" means, for keep: best and early stopping
    vmaf_tolerance: float = field(metadata=bounds(0.0))  # psnr_within_vmaf: VMAF points allowed below step 0's
    val_vmaf_triplets: int = field(metadata=bounds(0))  # val triplets whose predictions are scored by VMAF; 0 = off
    ema_decay: float = field(metadata=bounds(0.0, 1.0, hi_open=True))  # 0 = off; else the average is validated and kept
    checkpoint_every: int = field(metadata=bounds(1))  # optimizer steps between resumable checkpoints
    num_workers: int = field(metadata=bounds(0))
    threads: int = field(metadata=bounds(0))  # intra-op CPU threads of each training process; 0 = every core
    cpu_isa: str = field(metadata=choice("avx2", "native"))  # the CPU kernels' instruction set (same on any x86)
    # the network's forward under autocast (losses, warps, weights and checkpoints stay float32); Accelerate's
    # own --mixed_precision flag, given to `python -m pipeline.train`, wins over it
    mixed_precision: str = field(metadata=choice(*PRECISIONS))
    l2sp: float = field(metadata=bounds(0.0))  # pull towards the pretrained weights (decoupled L2-SP); 0 = off


@dataclass(frozen=True)
class LrFind:
    min_lr: float = field(metadata=bounds(0.0, 1.0, lo_open=True))
    max_lr: float = field(metadata=bounds(0.0, 10.0, lo_open=True))
    steps: int = field(metadata=bounds(10))  # the rate grows exponentially from min_lr to max_lr over these
    smoothing: float = field(metadata=bounds(0.0, 1.0, hi_open=True))  # exponential smoothing of the loss
    diverge: float = field(metadata=bounds(1.0, lo_open=True))  # stop when the smoothed loss passes this x its best


@dataclass(frozen=True)
class SegmentsOpts:
    seconds: float = field(metadata=bounds(0.0))  # rebuilt from the start of each test segment; 0 = none rebuilt
    block_frames: int = field(metadata=bounds(1))  # frames per block of the block bootstrap of the gains


@dataclass(frozen=True)
class VideosOpts:
    seconds: float = field(metadata=bounds(0.0))  # side-by-side video and preview from the first N s; 0 = none
    max_clips: int = field(metadata=bounds(0))  # clips that get them (most test triplets first)
    codec: str = field(metadata=choice("ffv1", "h264"))  # ffv1: lossless; h264: 10-bit 4:4:4 at crf 10, ~10x smaller
    panel_width: int = field(metadata=bounds(64))  # wider frames are shrunk to this (area average) in the video
    preview_size: int = field(metadata=bounds(32))  # side of the most improved square region, in source pixels
    preview_zoom: int = field(metadata=bounds(1, 8))  # pixel repetition of the preview


@dataclass(frozen=True)
class Evaluate:
    methods: tuple[str, ...] = field(metadata=choice(*METHODS))  # pipeline.scoring.interpolators.METHODS
    metrics: tuple[str, ...] = field(metadata=choice(*METRICS))  # pipeline.scoring.metrics.METRICS
    round_prediction: bool  # round to uint8 before the metrics, as RIFE's benchmark scripts do
    batch_size: int = field(metadata=bounds(1))  # triplets of one size and timestep per model call (pixel-capped)
    scale: WordOrNumber = field(metadata=choice("auto", 1.0, 0.5, 0.25))  # the model's flow scale; auto: by frame size
    mixed_precision: str = field(metadata=choice(*PRECISIONS))  # the models' forward under autocast; no: float32
    max_triplets: int = field(metadata=bounds(0))  # 0 = the whole test split
    bootstrap_samples: int = field(metadata=bounds(100))
    bootstrap_seed: int = field(metadata=bounds(0))
    motion_buckets: int = field(metadata=bounds(1))  # equal-count buckets of the manifest's motion score
    examples: int = field(metadata=bounds(1))  # most improved and most degraded triplets drawn as image grids (each)
    per_clip_max: int = field(metadata=bounds(1))  # clips listed in metrics.json (the largest; the rest pooled)
    segments: SegmentsOpts  # whole test segments rebuilt as a user would (every 2 x gap-th frame kept)
    videos: VideosOpts  # videos to watch of the rebuilt segments


@dataclass(frozen=True)
class Params:
    lr: float = field(metadata=bounds(0.0, 1.0, lo_open=True))
    base: Base
    sources: Sources
    extract: Extract
    augment: Augment
    train: Train
    evaluate: Evaluate
    lr_find: LrFind


# The sections a stage can name, in params.yaml's order
SECTIONS = tuple(f.name for f in fields(Params))


def _check_train(t: Train, source: str) -> None:
    warmup = to_steps(t.warmup_steps, t.steps)
    if t.schedule in WARMUP_SCHEDULES and warmup >= t.steps:
        counted = "" if isinstance(t.warmup_steps, int) else f" ({warmup} steps)"
        fits = f"use at most {t.steps - 1}, or 0" if t.steps > 1 else "use 0"
        raise UserError(f"{source}: train.warmup_steps = {t.warmup_steps}{counted} must be below train.steps "
                        f"({t.steps}); {fits}")
    for milestone in t.schedules.step.milestones if t.schedule == "step" else ():  # only the chosen one is read
        if not 0 < to_steps(milestone, t.steps) < t.steps:
            raise UserError(f"{source}: train.schedules.step.milestones has {milestone}, outside the run "
                            f"(train.schedule = step, train.steps = {t.steps}); milestones fall between step 1 and "
                            "the last step")
    if t.schedule == "one_cycle":
        _check_one_cycle(t.schedules.one_cycle.pct_start, t.steps, source)
    needs_val = {"train.schedule = plateau": t.schedule == "plateau", "train.keep = best": t.keep == "best",
                 "train.early_stopping.patience > 0": t.early_stopping.patience > 0}
    for what, needed in needs_val.items():
        if needed and t.val_every >= t.steps:
            raise UserError(f"{source}: {what} needs validations during the run, but train.val_every = "
                            f"{t.val_every} is not below train.steps = {t.steps}")
    _check_keep_by(t, source)
    if t.freeze.preset != "none" and t.freeze.groups:
        raise UserError(f"{source}: train.freeze.preset = {t.freeze.preset} already decides what is frozen; "
                        f"leave train.freeze.groups empty (it names {', '.join(t.freeze.groups)})")


def _check_keep_by(t: Train, source: str) -> None:
    """Choosing by VMAF needs VMAF at validation, and a choice to make (keep: best, or early stopping)."""
    if t.keep_by == "psnr":
        return
    if t.val_vmaf_triplets == 0:
        raise UserError(f"{source}: train.keep_by = {t.keep_by} needs VMAF at validation, but "
                        "train.val_vmaf_triplets = 0; set it to a number of val triplets (e.g. 32)")
    if t.keep == "last" and t.early_stopping.patience == 0:
        raise UserError(f"{source}: train.keep_by = {t.keep_by} chooses nothing with train.keep = last and "
                        "train.early_stopping.patience = 0; set train.keep: best")


def _check_one_cycle(pct_start: float, steps: int, source: str) -> None:
    """The rise of one_cycle needs at least 2 steps (pct_start is below 1, so a run of 3 steps at least)."""
    if pct_start * steps >= 2:
        return
    fits = (f"use at least {math.ceil(200 / steps) / 100:g}" if steps >= 3
            else "one_cycle needs train.steps of 3 or more")
    raise UserError(f"{source}: train.schedules.one_cycle.pct_start = {pct_start:g} leaves under 2 of the "
                    f"{steps} steps (train.steps) for the rise (train.schedule = one_cycle); {fits}")


def _check_extract(x: Extract, source: str) -> None:
    if x.split_by == "blocks" and x.block_frames < 2 * max(x.gap) + 1 + x.guard_frames:
        raise UserError(f"{source}: extract.block_frames = {x.block_frames} cannot hold a triplet of "
                        f"extract.gap {max(x.gap)} plus extract.guard_frames = {x.guard_frames} (extract.split_by = "
                        f"blocks); expected at least "
                        f"{2 * max(x.gap) + 1 + x.guard_frames}")
    if x.val_fraction + x.test_fraction >= 0.9:
        raise UserError(f"{source}: extract.val_fraction + extract.test_fraction = "
                        f"{x.val_fraction + x.test_fraction:g}: expected below 0.9, so training keeps some footage")


def _check_augment(a: Augment, source: str) -> None:
    if a.crop % 32:
        raise UserError(f"{source}: augment.crop = {a.crop}: expected a multiple of 32 "
                        "(RIFE's coarsest block works at 1/32 of the input)")


def _check_evaluate(e: Evaluate, source: str) -> None:
    for key, chosen, required in (("methods", e.methods, REQUIRED_METHODS), ("metrics", e.metrics, REQUIRED_METRICS)):
        missing = [name for name in required if name not in chosen]
        if missing:
            raise UserError(f"{source}: evaluate.{key} = [{', '.join(chosen)}] lacks {', '.join(missing)}; "
                            f"it must include {', '.join(required)}")


def _check_lr_find(f: LrFind, source: str) -> None:
    if f.min_lr >= f.max_lr:
        raise UserError(f"{source}: lr_find.min_lr = {f.min_lr:g} must be below lr_find.max_lr = {f.max_lr:g}")


# The checks between the values of one section, run only for a stage that reads that whole section
SECTION_CHECKS: dict[str, Callable[[Any, str], None]] = {
    "extract": _check_extract, "augment": _check_augment, "train": _check_train, "evaluate": _check_evaluate,
    "lr_find": _check_lr_find}


def check_sections(params: Params, sections: Iterable[str], source: str = "params") -> None:
    """Run the cross-field checks of each whole section in ``sections`` (entries as in dvc.yaml's ``params:``
    lists: ``train`` runs train's checks, ``train.arch`` none)."""
    for entry in sections:
        if entry.split(".")[0] not in SECTIONS:
            raise ValueError(f"params has no section {entry.split('.')[0]!r}; it has {', '.join(SECTIONS)}")
        if entry in SECTION_CHECKS:
            SECTION_CHECKS[entry](getattr(params, entry), source)


def load_params(path: str | Path = PARAMS_FILE, sections: Iterable[str] = SECTIONS) -> Params:
    """Read ``path`` (``params.yaml`` in the working directory by default) and check the type and value of every
    key; then the values that must agree with each other in each section the caller reads (``sections``: its
    stage's ``params:`` entries in dvc.yaml, so that a setting of ``train`` never stops ``extract``)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file (run from the project root)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise UserError(f"{path}:{where} is not valid YAML ({getattr(err, 'problem', err)})") from None
    _check_renamed(raw, str(path))
    params = build(Params, raw, "", str(path))
    check_sections(params, sections, str(path))
    return params


# Keys renamed since an earlier version: (section, old key) -> what to write instead and why
RENAMED = {("augment", "crops_per_triplet"): "augment.views_per_triplet (augment now stores a plan of views, "
                                             "drawn from the frames at training time, instead of the crops' pixels)"}


def _check_renamed(raw: object, source: str) -> None:
    """A key of an earlier version stops with one line naming its new name, not as an unknown key."""
    for (section, old), new in RENAMED.items():
        if isinstance(raw, dict) and isinstance(raw.get(section), dict) and old in raw[section]:
            raise UserError(f"{source}: {section}.{old} was renamed {new}; rename the key")
