"""The standard study: strategies, each with seed replicates, queued as DVC experiments.

A strategy is a set of params on top of the baseline commit (every run also gets :data:`STUDY_COMMON`); its
replicate ``k`` (1 .. N) runs with ``base.seed`` = the baseline's seed + k - 1, which changes every draw of a run
(augment's views, the batch order, torch's generators) but not the split (``extract.split_seed``): every run is
scored on the same test triplets, so runs compare triplet by triplet. Replicate 1 of ``default`` repeats the
baseline's own training."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from pipeline.core.errors import UserError
from pipeline.core.paths import LR_FIND_RESULTS

log = logging.getLogger(__name__)

LR_FIND_SUGGESTION = "valley"  # the suggestion the study tries (read it as an upper bound; see the README)
DEFAULT = "default"  # the strategy every other is compared with: the baseline's params as they are
# The standard study, name -> params set on top of the baseline commit: the default schedule, the RIFE author's
# advice, and the default schedule with a pull towards the pretrained weights, which protects what the model knows
# where the footage gives little signal. Three strategies x three seeds is what a 2-core CPU runs in about three
# hours (two runs at a time on one thread each); the extras join with --extended or --only.
STUDY: dict[str, dict[str, str]] = {
    DEFAULT: {},
    "author-1e-5": {"train.schedule": "warmup_constant", "lr": "1e-5"},  # the RIFE author's advice for 4.x
    "l2sp-100": {"train.l2sp": "100"},  # a pull towards the pretrained weights (decoupled L2-SP)
}
EXTRA: dict[str, dict[str, str]] = {
    "coarse-slow": {"train.groups.layer_decay": "0.3"},  # each coarser block (larger motion) at 0.3x the finer one's
    "rife-cosine-3e-4": {"train.schedule": "warmup_cosine", "lr": "3e-4"},  # RIFE's own from-scratch recipe
    "freeze-then-all": {"train.freeze.preset": "freeze_then_all"},  # only the finest block for the first quarter
    # Detail a viewer sees (the default gains PSNR but loses a little VMAF): a census (ternary) term and an edge term
    # beside the Laplacian L1, each weighted to about a tenth of it on the demo's pretrained predictions; and the
    # weights kept by val PSNR among validations whose VMAF is not below the pretrained model's
    "census": {"train.loss.census": "0.5"},
    "gradient": {"train.loss.gradient": "0.15"},
    "keep-vmaf": {"train.keep": "best", "train.keep_by": "psnr_within_vmaf", "train.val_vmaf_triplets": "32"},
    # Speed: the default in bfloat16 autocast on the CPU's own kernels (AMX or AVX-512 BF16; slower on other CPUs),
    # against the default's seed noise: does the faster run give the same gain?
    "bf16": {"train.mixed_precision": "bf16", "train.cpu_isa": "native"},
}

# What every run of the study shares: the comparison it exists for (fine-tuned against pretrained, PSNR and SSIM,
# on the triplets and on the rebuilt segments with VMAF); the baselines of the evaluate stage do not depend on the
# learning rate, and the side-by-side videos (tens of MB each) are for watching one run, not for a study.
STUDY_COMMON = {"evaluate.methods": "[finetuned,pretrained]", "evaluate.metrics": "[psnr,ssim]",
                "evaluate.videos.seconds": "0"}
REPLICATE = "-seed"  # a run's name: <strategy>-seed<k>


def replicate_name(strategy: str, k: int) -> str:
    return f"{strategy}{REPLICATE}{k}"


def strategy_of(name: str) -> str:
    """The strategy a run's name belongs to (``default-seed2`` -> ``default``; other names stay as they are)."""
    head, sep, k = name.rpartition(REPLICATE)
    return head if sep and k.isdigit() else name


def parse_shard(spec: str) -> tuple[int, int]:
    """``"k/n"`` (1 <= k <= n) as ``(k, n)``; anything else is a :class:`UserError`."""
    k, sep, n = spec.partition("/")
    if not (sep and k.strip().isdigit() and n.strip().isdigit() and 1 <= int(k) <= int(n)):
        raise UserError(f"--shard {spec}: expected k/n, this machine's share k of n machines with 1 <= k <= n "
                        "(e.g. --shard 1/3)")
    return int(k), int(n)


def study_runs(cwd: Path = Path("."), extended: bool = False) -> dict[str, dict[str, str]]:
    """The study's strategies in a fixed order: :data:`STUDY`; when ``extended``, then :data:`EXTRA` and the
    constant rate lr_find suggests (last, so a machine without lr_find's results gives every other run the same
    shard)."""
    runs = dict(STUDY)
    if not extended:
        return runs
    runs.update(EXTRA)
    metrics = cwd / LR_FIND_RESULTS / "metrics.json"
    if metrics.is_file():
        rate = json.loads(metrics.read_text())["suggested"][LR_FIND_SUGGESTION]
        runs[f"lr-find-{LR_FIND_SUGGESTION}"] = {"train.schedule": "warmup_constant", "lr": f"{rate:.2g}"}
    else:
        log.warning("%s is missing (run dvc repro lr_find): the lr_find run is left out", metrics)
    return runs


def select_runs(runs: dict[str, dict[str, str]], only: list[str] | None = None, seeds: int = 1, first_seed: int = 0,
                shard: tuple[int, int] = (1, 1)) -> dict[str, dict[str, str]]:
    """Every replicate (1 .. ``seeds``) of the strategies named in ``only`` (all if None), strategy by strategy,
    then shard ``k`` of ``n``: every n-th run from the k-th, so the shards are disjoint, together hold every run,
    and differ in size by at most one. Replicate k sets ``base.seed`` to ``first_seed + k - 1``."""
    unknown = sorted(set(only or ()) - set(runs))
    if unknown:
        raise UserError(f"--only {','.join(unknown)}: not a strategy of the study; its strategies are "
                        f"{', '.join(runs)}")
    chosen = {replicate_name(name, k): {**runs[name], "base.seed": str(first_seed + k - 1)}
              for name in runs if only is None or name in only for k in range(1, seeds + 1)}
    k, n = shard
    names = list(chosen)[k - 1::n]
    return {name: chosen[name] for name in names}


def baseline_seed(cwd: Path = Path(".")) -> int:
    import yaml  # the params file's own seed, as committed

    return int(yaml.safe_load((cwd / "params.yaml").read_text())["base"]["seed"])


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """``--set key=value`` flags as a mapping; anything else is a :class:`UserError`."""
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not (sep and key.strip() and value.strip()):
            raise UserError(f"--set {pair}: expected key=value, a params.yaml key and its value "
                            "(e.g. --set train.threads=1)")
        settings[key.strip()] = value.strip()
    return settings


def queue_runs(runs: dict[str, dict[str, str]], steps: int | None, extra: dict[str, str] | None = None,
               cwd: Path = Path(".")) -> None:
    """``dvc exp run --queue`` each run (with :data:`STUDY_COMMON`, ``extra``, and ``train.steps`` when ``steps``
    is set; a strategy's own params win). Each run reproduces up to ``evaluate``: lr_find, which depends on the seed
    and the groups, would rerun in every experiment and nothing of a run reads it."""
    common = {**STUDY_COMMON, **(extra or {}), **({"train.steps": str(steps)} if steps else {})}
    for name, changes in runs.items():
        changes = {**common, **changes}
        cmd = [sys.executable, "-m", "dvc", "exp", "run", "--queue", "-n", name]
        for key, value in changes.items():
            cmd += ["-S", f"{key}={value}"]
        cmd.append("evaluate")
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
            raise UserError(f"could not queue {name}: {lines[-1] if lines else done.returncode}")
        log.info("queued %s: %s", name, ", ".join(f"{k}={v}" for k, v in changes.items()))
