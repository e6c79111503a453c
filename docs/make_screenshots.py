"""Screenshots of the app from a real run: the README's `docs/screenshot.png` and one PNG per view.

    python docs/make_screenshots.py [--orbit 20001] [--out docs] [--views-out test-artifacts/views]

Serves the app on the embedded demo catalogue and cube (as `make serve` does) in this process,
in a fresh data root, drives Debian's Chromium (Playwright) to pick the orbit, select the
reference U-Net and press Run (real inference), then photographs the swath map (the README's
screenshot) and every view. Needs /usr/bin/chromium (or RAINCHECK_CHROMIUM).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orbit", type=int, default=20001)
    ap.add_argument("--model", default="unet-reference")
    ap.add_argument("--out", default=str(ROOT / "docs"))
    ap.add_argument("--views-out", default=str(ROOT / "test-artifacts" / "views"))
    ap.add_argument("--region", default="global")
    args = ap.parse_args(argv)

    os.environ.setdefault("RAINCHECK_DATA_ROOT", tempfile.mkdtemp(prefix="raincheck-shots-"))
    from playwright.sync_api import sync_playwright

    from app.commands.serve import make_server
    from app.state import VIEW_LABELS
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    srv = make_server(port=port, threaded=True)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10).close()
            break
        except OSError:
            time.sleep(0.5)
    views_out = Path(args.views_out)
    views_out.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=os.environ.get("RAINCHECK_CHROMIUM", "/usr/bin/chromium"),
                                        args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.set_default_timeout(300_000)
            page.goto(f"http://127.0.0.1:{port}/?orbit={args.orbit}&region={args.region}")
            page.wait_for_selector("canvas", state="attached")
            page.locator(".choices").first.click()
            page.keyboard.type(args.model)
            page.keyboard.press("Enter")
            page.keyboard.press("Escape")
            page.get_by_role("button", name=f"Run {args.model}").click()
            page.get_by_text(re.compile("computed on")).wait_for()
            page.wait_for_timeout(4000)  # the maps re-render with the new output
            shot = Path(args.out) / "screenshot.png"
            page.screenshot(path=str(shot))
            print(f"wrote {shot}")
            for v, label in VIEW_LABELS.items():
                page.get_by_text(label, exact=True).first.click()
                page.wait_for_timeout(6000)
                path = views_out / f"view-{v}.png"
                page.screenshot(path=str(path), full_page=True)
                print(f"wrote {path}")
            browser.close()
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
