"""Benchmarks of the extract stage (run on demand, not part of the test suite):

    python -m tests.benchmarks.bench_extract

1. Throughput: ``python -m pipeline.extract`` (the real stage, default params) against a decode-only pass
   over the same videos with the same number of processes; prints frames/s of each and their ratio
   (target >= 0.8). Two workloads: a long generated clip, where the per-clip cap keeps the stored frames
   few, and the real demo clips, where nearly every frame is stored as PNG.
2. Memory: peak RSS of the stage on a generated 5,000-frame video against a 500-frame one (target: within 10%).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]

DECODE_ONLY = """
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from pipeline.core.system import available_cores
from pipeline.footage.sources import discover
from pipeline.footage.video import iter_video_bgr

def count(path):
    return sum(1 for _ in iter_video_bgr(path))

if __name__ == "__main__":
    clips = discover(Path(sys.argv[1]), False).clips
    with ProcessPoolExecutor(min(len(clips), available_cores())) as pool:
        print(sum(pool.map(count, [c.path for c in clips])))
"""

PEAK_RSS = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
if done.returncode:
    sys.exit(done.stderr)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def generated_video(path: Path, frames: int, width: int = 640, height: int = 360, speed: int = 2) -> Path:
    """A camera-like pan over smooth noise, written frame by frame (memory does not grow with length)."""
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.random((height, width + speed * frames), dtype=np.float32), (0, 0), 4)
    texture = cv2.normalize(texture, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (width, height))
    for i in range(frames):
        gray = texture[:, i * speed:i * speed + width]
        writer.write(cv2.merge([gray, np.roll(gray, 7, axis=0), np.roll(gray, 13, axis=1)]))
    writer.release()
    return path


def project(workdir: Path, videos: Path) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sources"]["videos"] = str(videos)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    return workdir


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return time.perf_counter() - start, done.stdout


def throughput(name: str, videos: Path, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        work = project(Path(tmp), videos)
        decode_s = extract_s = float("inf")
        frames = 0
        for _ in range(repeats):  # best of n for both, interleaved so drift hits both alike
            seconds, out = timed([sys.executable, "-c", DECODE_ONLY, str(videos)], work)
            decode_s, frames = min(decode_s, seconds), int(out.strip())
            extract_s = min(extract_s, timed([sys.executable, "-m", "pipeline.extract"], work)[0])
        report = json.loads((work / "data/triplets/report.json").read_text())
        stored = sum(1 for _ in (work / "data/triplets/frames").rglob("*.png"))
    result = {"workload": name, "frames": frames, "stored_frames": stored, "kept": report["kept"],
              "decode_fps": frames / decode_s, "extract_fps": frames / extract_s}
    result["ratio"] = result["extract_fps"] / result["decode_fps"]
    print(f"{name}: {frames} frames decoded, {stored} stored | decode-only {result['decode_fps']:.0f} fps, "
          f"extract {result['extract_fps']:.0f} fps | ratio {result['ratio']:.2f} (target >= 0.8)")
    return result


def peak_rss_mb(videos: Path) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        work = project(Path(tmp), videos)
        _, out = timed([sys.executable, "-c", PEAK_RSS, sys.executable, "-m", "pipeline.extract"], work)
    return int(out.strip()) / 1024


def memory(scratch: Path) -> dict:
    sizes = {}
    for frames in (500, 5000):
        folder = scratch / f"long{frames}"
        folder.mkdir()
        generated_video(folder / "pan.mp4", frames)
        sizes[frames] = peak_rss_mb(folder)
    ratio = sizes[5000] / sizes[500]
    print(f"peak RSS: 500 frames {sizes[500]:.0f} MB, 5000 frames {sizes[5000]:.0f} MB | ratio {ratio:.3f} "
          "(target <= 1.10)")
    return {"peak_rss_mb_500": sizes[500], "peak_rss_mb_5000": sizes[5000], "ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--demo", type=Path, default=ROOT / "data/demo", help="folder of the demo clips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        (scratch / "pan").mkdir()
        generated_video(scratch / "pan/pan.mp4", 3000)
        results = [throughput("generated 3000-frame 640x360 pan", scratch / "pan", args.repeats)]
        if any(args.demo.glob("*.mp4")):
            results.append(throughput("demo clips (bigbuckbunny + bikes)", args.demo, args.repeats))
        else:
            print(f"{args.demo}: no demo clips (run `dvc repro fetch`); demo workload skipped")
        results.append(memory(scratch))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
