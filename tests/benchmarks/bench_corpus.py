"""Benchmark of the pipeline on a corpus of Vimeo-90K's layout and size class (run on demand, not by the tests):

    python -m tests.benchmarks.bench_corpus [--triplets 20000] [--ratio 10] [--work DIR] [--keep]

Generates in a scratch folder (never committed) a corpus in Vimeo-90K's triplet layout, the one ``extract`` reads
as it is (``sequences/<group>/<entry>/im1.png, im2.png, im3.png`` with ``tri_trainlist.txt`` and
``tri_testlist.txt``; ``sources.videos`` names the folder), at 448x256, with ``--triplets`` triplets of which
Vimeo-90K's share (3,782 of 55,095) are listed for test. Each triplet is synthetic moving content: a textured
background under its own affine motion (translation, rotation, zoom) and a textured ellipse moving across it
with another velocity, so the flow has occlusions and motion boundaries. A second corpus ``--ratio`` times
smaller lists the first entries of the same folder.

On each corpus, smaller first, it runs the stages as dvc.yaml does (``python -m pipeline.<stage>``): extract,
augment, the first ``--train-steps`` steps of training, and evaluate on a test split capped at
``--eval-share`` of the corpus (``evaluate.max_triplets``), and measures per stage: wall time, CPU time (on a
machine shared with other work, the steadier measure of the work done), peak memory (the largest process, from
getrusage, and the sum over the stage's processes, sampled every 0.2 s) and the disk its outputs take. Prints
each figure's growth from the small corpus to the large one and a linear extrapolation to the full Vimeo-90K
(51,313 + 3,782 triplets). The frames are read soon after they were written, so much of the
corpus may still be in the page cache: a cold read from disk would be slower.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 448, 256  # Vimeo-90K's frame size
VIMEO_TRIPLETS, VIMEO_TEST = 51_313 + 3_782, 3_782  # train + test list entries of the real corpus
GROUP = 100  # entries per sequences/<group> folder (val is dealt by group; small groups keep its share near 10%)
TEXTURES = 16  # backgrounds and foregrounds are cut from this many generated textures
STAGES = {"extract": ["data/triplets"], "augment": ["data/augmented"],
          "train": ["models/finetuned", "results/train"], "evaluate": ["results/evaluate"]}
MEASURE = """
import resource, subprocess, sys, time
began = time.perf_counter()
done = subprocess.run(sys.argv[1:])
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(done.returncode, time.perf_counter() - began, usage.ru_utime + usage.ru_stime, usage.ru_maxrss)
"""


def texture(rng: np.random.Generator, height: int = 512, width: int = 768) -> np.ndarray:
    """Smooth colour noise at several scales (uint8), a stand-in for natural image statistics."""
    image = np.zeros((height, width, 3), np.float32)
    for sigma, weight in ((3, 0.3), (8, 0.6), (20, 1.0), (48, 1.5)):
        noise = rng.standard_normal((height, width, 3)).astype(np.float32)
        image += weight * sigma * cv2.GaussianBlur(noise, (0, 0), sigma)
    image = (image - image.mean()) / image.std()
    return np.clip(128 + 50 * image, 0, 255).astype(np.uint8)


def moving_triplet(rng: np.random.Generator, pool: list[np.ndarray]) -> list[np.ndarray]:
    """Three frames (t = 0, 0.5, 1) of a background under affine motion and an ellipse moving over it."""
    back, front = (pool[i] for i in rng.choice(len(pool), 2, replace=False))
    velocity, angle, zoom = rng.uniform(-6, 6, 2), rng.uniform(-1.5, 1.5), rng.uniform(-0.02, 0.02)
    origin = rng.uniform([0, 0], [back.shape[1] - WIDTH, back.shape[0] - HEIGHT])
    speed, axes = rng.uniform(-10, 10, 2), rng.uniform([30, 20], [90, 70])
    centre = rng.uniform([100, 60], [WIDTH - 100, HEIGHT - 60])
    offset = rng.uniform([0, 0], [front.shape[1] - WIDTH, front.shape[0] - HEIGHT])
    frames = []
    for k in (-1, 0, 1):  # the middle frame is the target
        matrix = cv2.getRotationMatrix2D((WIDTH / 2, HEIGHT / 2), k * angle, (1 + zoom) ** k)
        matrix[:, 2] += origin + k * velocity
        frame = cv2.warpAffine(back, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT)
        shift = np.float32([[1, 0, offset[0] - k * speed[0]], [0, 1, offset[1] - k * speed[1]]])
        patch = cv2.warpAffine(front, shift, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT)
        at = centre + k * speed
        mask = cv2.ellipse(np.zeros((HEIGHT, WIDTH), np.uint8), (int(at[0]), int(at[1])),
                           (int(axes[0]), int(axes[1])), 0, 0, 360, 1, -1).astype(bool)
        frame[mask] = patch[mask]
        frames.append(frame)
    return frames


def entry_name(index: int) -> str:
    return f"{index // GROUP + 1:05d}/{index % GROUP + 1:04d}"


def is_test(index: int) -> bool:
    return index % 29 in (0, 1)  # 6.9% of the entries, Vimeo-90K's share


POOL: list[np.ndarray] = []  # the textures, made once in each generating process


def make_textures() -> None:
    POOL.extend(texture(np.random.default_rng(1000 + i)) for i in range(TEXTURES))


def write_entries(args: tuple[Path, int, int]) -> None:
    """Entries [start, stop) of the corpus under ``folder``, each seeded by its index."""
    folder, start, stop = args
    for index in range(start, stop):
        entry = folder / "sequences" / entry_name(index)
        entry.mkdir(parents=True, exist_ok=True)
        frames = moving_triplet(np.random.default_rng(index), POOL)
        for name, frame in zip(("im1.png", "im2.png", "im3.png"), frames, strict=True):
            cv2.imwrite(str(entry / name), frame)


def write_lists(folder: Path, count: int) -> None:
    for split, name in ((False, "tri_trainlist.txt"), (True, "tri_testlist.txt")):
        (folder / name).write_text("".join(f"{entry_name(i)}\n" for i in range(count) if is_test(i) == split))


def generate(folder: Path, count: int) -> float:
    """Write the corpus of ``count`` entries (in parallel, one process per core); its wall time."""
    began = time.perf_counter()
    cores = len(os.sched_getaffinity(0))
    chunks = [(folder, start, min(start + GROUP, count)) for start in range(0, count, GROUP)]
    with multiprocessing.get_context("spawn").Pool(cores, initializer=make_textures) as pool:
        for _ in pool.imap_unordered(write_entries, chunks):
            pass
    write_lists(folder, count)
    return time.perf_counter() - began


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo.extend(children.get(found[-1], []))
    return found


def rss_sum(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError):
            pass
    return total


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_stage(project: Path, stage: str) -> dict[str, float]:
    """Run ``python -m pipeline.<stage>`` in ``project``: wall time, peak RSS (largest process; sum), output disk."""
    proc = subprocess.Popen([sys.executable, "-c", MEASURE, sys.executable, "-m", f"pipeline.{stage}"], cwd=project,
                            stdout=subprocess.PIPE, stderr=open(project / f"{stage}.log", "w"), text=True,
                            env={**os.environ, "PYTHONPATH": str(project)})
    peak = 0
    sampling = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not sampling.wait(0.2):
            peak = max(peak, rss_sum(descendants(proc.pid)[1:]))  # the measuring wrapper itself left out

    sampler = threading.Thread(target=sample)
    sampler.start()
    out, _ = proc.communicate()
    sampling.set()
    sampler.join()
    code, seconds, cpu, largest = out.split()
    if int(code):
        sys.exit(f"{stage} failed in {project}; see {project / (stage + '.log')}")
    disk = sum(folder_bytes(project / p) for p in STAGES[stage] if (project / p).exists())
    return {"seconds": float(seconds), "cpu_seconds": float(cpu), "rss_mb": int(largest) / 1024,
            "rss_sum_mb": peak / 2**20, "disk_mb": disk / 2**20}


def make_project(project: Path, corpus: Path, count: int, args: argparse.Namespace) -> None:
    """A scratch copy of the project reading ``corpus``, with the pretrained weights of this checkout."""
    shutil.copytree(ROOT / "pipeline", project / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "models").mkdir()
    os.symlink(ROOT / "models/pretrained", project / "models/pretrained")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sources"]["videos"] = str(corpus)
    params["train"].update(steps=args.train_steps, schedule="warmup_constant", warmup_steps=1,
                           val_every=args.train_steps, val_max_triplets=args.val_triplets, checkpoint_every=1000)
    params["evaluate"]["max_triplets"] = max(1, round(count * args.eval_share))
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def measure_corpus(work: Path, source: Path, count: int, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    corpus = work / f"corpus_{count}"
    if corpus != source:
        corpus.mkdir()
        os.symlink(source / "sequences", corpus / "sequences")
        write_lists(corpus, count)
    project = work / f"project_{count}"
    make_project(project, corpus, count, args)
    results = {}
    for stage in STAGES:
        results[stage] = run_stage(project, stage)
        print(f"{count} triplets, {stage}: {json.dumps({k: round(v, 1) for k, v in results[stage].items()})}",
              flush=True)
    kept = json.loads((project / "data/triplets/report.json").read_text())["kept"]
    results["counts"] = {"kept_" + k: v for k, v in kept.items()}
    results["counts"]["evaluated"] = min(kept["test"], max(1, round(count * args.eval_share)))
    return results


def extrapolate(small: float, large: float, n_small: int, n_large: int, n_full: int) -> float:
    """The straight line through the two measurements, at ``n_full`` (never below the smaller measurement)."""
    return max(min(small, large), large + (large - small) / (n_large - n_small) * (n_full - n_large))


def print_table(small: dict, large: dict, n_small: int, n_large: int) -> None:
    """Per stage and figure: both measurements, the growth, and the value at the full Vimeo-90K, linear in the
    corpus size (evaluate: in the triplets scored, at Vimeo-90K's whole test list)."""
    print(f"\n| stage | figure | {n_small:,} triplets | {n_large:,} triplets "
          f"| growth (corpus x{n_large / n_small:g}) | "
          f"full Vimeo-90K ({VIMEO_TRIPLETS:,} triplets; evaluate: its {VIMEO_TEST:,} test triplets) |")
    print("|---|---|---|---|---|---|")
    names = {"seconds": "wall time (s)", "cpu_seconds": "CPU time, all its processes (s)",
             "rss_mb": "peak RSS, largest process (MB)",
             "rss_sum_mb": "peak RSS, all its processes (MB)", "disk_mb": "output on disk (MB)"}
    for stage in STAGES:
        sizes = ((small["counts"]["evaluated"], large["counts"]["evaluated"], VIMEO_TEST) if stage == "evaluate"
                 else (n_small, n_large, VIMEO_TRIPLETS))
        for key, name in names.items():
            a, b = small[stage][key], large[stage][key]
            full = f"{extrapolate(a, b, *sizes):,.0f}" if "rss" not in key else "(memory)"
            print(f"| {stage} | {name} | {a:,.1f} | {b:,.1f} | x{b / a:.2f} | {full} |")
    (n0, n1), (t0, t1) = ((small["counts"]["evaluated"], large["counts"]["evaluated"]),
                          (small["evaluate"]["seconds"], large["evaluate"]["seconds"]))
    print(f"\nevaluate: {n0} and {n1} test triplets in {t0:.0f} s and {t1:.0f} s: {(t1 - t0) / (n1 - n0) * 1000:.0f} s "
          f"per 1,000 triplets beyond a fixed {t0 - (t1 - t0) / (n1 - n0) * n0:.0f} s")
    print(f"kept: {small['counts']} / {large['counts']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triplets", type=int, default=20_000)
    parser.add_argument("--ratio", type=int, default=10, help="the small corpus is this many times smaller")
    parser.add_argument("--train-steps", type=int, default=4)
    parser.add_argument("--val-triplets", type=int, default=20, help="train.val_max_triplets")
    parser.add_argument("--eval-share", type=float, default=0.05, help="evaluate.max_triplets as a share of the corpus")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new one under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    work = args.work or Path(f"/tmp/bench_corpus_{os.getpid()}")
    work.mkdir(parents=True)
    try:
        source = work / f"corpus_{args.triplets}"
        seconds = generate(source, args.triplets)
        print(f"generated {args.triplets:,} triplets at {WIDTH}x{HEIGHT} in {seconds:.0f} s: "
              f"{folder_bytes(source / 'sequences') / 2**30:.2f} GiB", flush=True)
        small_count = args.triplets // args.ratio
        small = measure_corpus(work, source, small_count, args)
        large = measure_corpus(work, source, args.triplets, args)
        print_table(small, large, small_count, args.triplets)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
