"""Render a run's report.html in headless Chromium and save a screenshot, to check the report as a reader sees it.

    python scripts/screenshot_report.py RUN_DIR [OUT.png] [--width 1280] [--height 6000]

Needs a Chromium binary (``apt-get install -y chromium``); not used by CI.  Without RUN_DIR/report.html, the
report is built first.  The browser runs with no network, no GPU and no sandbox (for containers).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def find_chromium() -> str:
    """Path of a Chromium/Chrome binary on PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("screenshot_report: no Chromium found; install it with `apt-get install -y chromium`")


def screenshot(html: Path, out: Path, width: int, height: int) -> None:
    """Save a ``width × height`` screenshot of ``html`` to ``out``."""
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
            f"--window-size={width},{height}", f"--screenshot={out.resolve()}", html.resolve().as_uri(),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not out.is_file():
        sys.exit(f"screenshot_report: Chromium failed ({proc.returncode}):\n{proc.stderr[-2000:]}")


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out", type=Path, nargs="?", default=None)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=6000)
    args = parser.parse_args()
    html = args.run_dir / "report.html"
    if not html.is_file():
        from lcnflow.report import build_report

        html = build_report(args.run_dir)
    out = args.out or args.run_dir / "report-screenshot.png"
    screenshot(html, out, args.width, args.height)
    print(out)


if __name__ == "__main__":
    main()
