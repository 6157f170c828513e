"""First contentful paint of the built docs site, served on loopback, in Debian's Chromium.

Builds the site (en + ur) into a temporary folder (or takes `--build-dir`), serves it with the same static server
`make up` uses, and loads the home page and a chapter in both locales, each load in a fresh browser profile
(nothing cached). The baseline, measured in the same run by the same server and browser, is a plain HTML page
with a heading and a few paragraphs and no CSS or JavaScript: what the browser and the server cost on their own.
Target: median FCP under 1 s for every page.

    python -m bench.site_paint [--loads 7] [--build-dir website/build]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path

from bench.harness import machine_line, markdown_table, write_section
from devenv.site import build_site, site_server

TARGET_MS = 1000.0
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
PAGES = [("home (en)", "/"), ("chapter (en)", "/docs/ros2-fundamentals"),
         ("home (ur)", "/ur/"), ("chapter (ur)", "/ur/docs/ros2-fundamentals")]
BASELINE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Baseline</title></head>
<body><h1>Baseline page</h1>
""" + "<p>A plain paragraph of text with no stylesheet and no script, served by the same server.</p>\n" * 20 + """
</body></html>
"""
FCP_JS = """() => new Promise((resolve) => {
    const found = () => performance.getEntriesByName('first-contentful-paint')[0];
    if (found()) return resolve(found().startTime);
    new PerformanceObserver(() => found() && resolve(found().startTime)).observe({type: 'paint', buffered: true});
})"""


def serve(directory: Path) -> tuple[object, str]:
    server = site_server(directory, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def measure(browser, url: str, loads: int) -> tuple[list[float], list[float]]:
    """FCP and load-event times (ms) of `loads` cold loads of url."""
    fcps, load_events = [], []
    for _ in range(loads):
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        response = page.goto(url, wait_until="load")
        assert response is not None and response.status == 200, f"{url}: {response and response.status}"
        fcps.append(float(page.evaluate(FCP_JS)))
        load_events.append(float(page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0]; return n.loadEventEnd - n.startTime; }")))
        context.close()
    return fcps, load_events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.site_paint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--loads", type=int, default=7, help="cold loads per page (the median is reported)")
    parser.add_argument("--build-dir", type=Path, default=None, help="an existing build (default: build one now)")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        print("error: Debian's chromium is missing (devenv/install-system-packages.sh)", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="site-paint-") as scratch:
        root = Path(scratch)
        build_dir = args.build_dir or build_site(api_url="http://127.0.0.1:8000", out_dir=root / "build")
        (root / "baseline").mkdir()
        (root / "baseline" / "index.html").write_text(BASELINE_HTML)
        site, site_url = serve(build_dir)
        baseline, baseline_url = serve(root / "baseline")
        rows = []
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
                measure(browser, f"{site_url}/", 1)  # the first Chromium start pays for its own caches
                for name, url in [("baseline: plain HTML", f"{baseline_url}/"),
                                  *[(name, f"{site_url}{path}") for name, path in PAGES]]:
                    fcps, load_events = measure(browser, url, args.loads)
                    median = statistics.median(fcps)
                    baseline_row = name.startswith("baseline")
                    rows.append([name, "/" + url.split("/", 3)[3], round(median, 1), round(min(fcps), 1),
                                 round(max(fcps), 1), round(statistics.median(load_events), 1),
                                 "-" if baseline_row else "< 1000 ms", "-" if baseline_row else
                                 ("yes" if median < TARGET_MS else "no")])
                browser.close()
        finally:
            site.shutdown()
            baseline.shutdown()
    table = markdown_table(["page", "path", "FCP median ms", "min", "max", "load event median ms", "target", "met"],
                           rows)
    print(table)
    notes = (f"{args.loads} cold loads per page, each in a fresh browser profile (no cache), headless Debian Chromium "
             "1280x900, served on loopback by `devenv.site` (the server `make up` runs). FCP is "
             "`performance.getEntriesByName('first-contentful-paint')`. The baseline is a plain HTML page with no CSS "
             "or JavaScript served by the same server and browser in the same run. Load average when it started: "
             f"{load_before:.1f} (on a shared machine, FCP grows with it; the baseline shows the share of it).")
    write_section("Docs site: first contentful paint", f"{machine_line()}\n\n{table}\n\n{notes}")
    return 0 if all(row[-1] in ("yes", "-") for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
