"""Open the built book in headless Chromium and fail on what a reader would see broken.

    python book/check_browser.py [_build/html] [--screenshots _build/screenshots] [--browser chromium] [--root .]

Every page of the built book is opened (index.html and every chapter: each .html file outside _static,
_sources and Sphinx's generated index/search pages), after its scripts ran, and checked for
  - a broken image: an <img> the browser finished loading with no pixels (naturalWidth 0);
  - a 404 link: a link or image source inside the book (relative, no scheme) whose file does not exist
    (links to other sites are not followed: the check runs offline);
  - a Python traceback in an output cell ("Traceback (most recent call last)" or an error output block);
  - raw LaTeX: math that MathJax did not typeset (a .math element with no rendered mjx-container), which is
    what a reader sees when the renderer cannot be loaded;
  - a machine path: the repository's absolute root (as given and resolved; --root, default the clone this
    script is in) or the home folder anywhere in the page's visible text, the rule tests/test_book_publish.py
    holds the executed copies to; and in a cell output, any absolute path under a system folder (/tmp/,
    /root/, /home/, /usr/ ...: SYSTEM_FOLDERS). Written prose may name such a folder as an example (a
    destination under /tmp/), so that rule reads only what the cells printed.
A PNG screenshot of each page is saved. One line is printed per problem (page: what) and the exit status
is 1 when there is any, 2 when no browser can be started (install one: apt-get install -y chromium).

Chromium runs with --headless --no-sandbox --disable-gpu --disable-background-networking
--disable-component-update --no-first-run --disable-sync and a throw-away profile, and is driven through its
DevTools protocol (tornado's websocket client, which Jupyter already installs).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
SKIPPED = {"genindex.html", "search.html", "py-modindex.html"}
ROOT = Path(__file__).resolve().parents[1]  # the clone whose book this is, by default
# An absolute path under one of these names the machine the book was built on, not anything in the book.
SYSTEM_FOLDERS = ("tmp", "root", "home", "usr", "opt", "var", "private", "Users", "mnt", "srv")
SYSTEM_PATH = re.compile(r"(?<![\w.~/:-])/(?:" + "|".join(SYSTEM_FOLDERS) + r")/[^\s'\"<>()\[\],;]*")

# Run in each page once it has loaded; returns what the checks need.
PROBE = r"""(() => {
  const images = [...document.images].map(i => ({src: i.getAttribute('src') || '', complete: i.complete,
                                                  width: i.naturalWidth}));
  const links = [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'));
  const outputs = [...document.querySelectorAll('.cell_output, .output')].map(o => o.innerText);
  const errors = document.querySelectorAll('.cell_output .traceback, .output.traceback, .output.error').length;
  const text = document.body ? document.body.innerText : '';
  const math = [...document.querySelectorAll('.math')];
  const raw = math.filter(m => !m.querySelector('mjx-container') && !m.closest('mjx-container')).length;
  return JSON.stringify({location: location.href, images, links, outputs, text, errors, math: math.length, raw});
})()"""


def find_browser(name: str | None = None) -> str | None:
    for candidate in ([name] if name else BROWSERS):
        path = shutil.which(candidate)
        if path:
            return path
    return None


def pages(html: Path) -> list[Path]:
    """index.html first, then every other page of the book in path order."""
    found = [p for p in sorted(html.rglob("*.html"))
             if p.relative_to(html).parts[0] not in ("_static", "_sources", "_images") and p.name not in SKIPPED]
    index = html / "index.html"
    return ([index] if index in found else []) + [p for p in found if p != index]


def missing_target(page: Path, html: Path, reference: str) -> str | None:
    """The book-relative path `reference` (from `page`) points at when that file does not exist, else None."""
    parts = urlsplit(reference)
    if parts.scheme or parts.netloc or not parts.path or reference.startswith(("#", "mailto:", "javascript:")):
        return None  # another site, an anchor on the same page, or no file
    target = (page.parent / unquote(parts.path)).resolve()
    if target.is_dir():
        target = target / "index.html"
    if target.exists():
        return None
    try:
        return str(target.relative_to(html.resolve()))
    except ValueError:
        return str(target)


def machine_paths(text: str, outputs: list[str], root: Path, home: str | None = None) -> list[str]:
    """Each machine path a reader of the page sees (see the module docstring), once, with its context."""
    home = str(Path.home()) if home is None else home
    literal = sorted({str(root), os.path.realpath(root)}, key=len, reverse=True)
    literal += [home.rstrip("/") + "/"] if home not in ("", "/") else []
    found = {}
    for needle in literal:
        start = text.find(needle)
        if start >= 0 and not any(needle in seen for seen in found):
            found[needle] = _context(text, start, len(needle))
    for output in outputs:
        for match in SYSTEM_PATH.finditer(output):
            if not any(needle in match.group() for needle in found):  # a path already reported
                found[match.group()] = _context(output, match.start(), len(match.group()))
    return list(found.values())


def _context(text: str, start: int, length: int, width: int = 30) -> str:
    around = text[max(0, start - width):start + length + width]
    return " ".join(around.split())


def problems(page: Path, html: Path, probe: dict, root: Path = ROOT) -> list[str]:
    """One line per problem the probe of `page` shows (see the module docstring)."""
    name = str(page.relative_to(html))
    # links resolve from where the browser is (index.html of a Jupyter Book redirects to its first page)
    if probe.get("location", "").startswith("file://"):
        page = Path(unquote(urlsplit(probe["location"]).path))
    found = []
    for image in probe["images"]:
        if image["complete"] and image["width"] == 0:
            found.append(f"{name}: broken image {image['src'][:80]}")
    for reference in probe["links"] + [image["src"] for image in probe["images"]]:
        target = missing_target(page, html, reference)
        if target:
            found.append(f"{name}: 404 link {reference} (no {target})")
    tracebacks = sum("Traceback (most recent call last)" in text for text in probe["outputs"])
    if tracebacks or probe["errors"]:
        found.append(f"{name}: Python traceback in {max(tracebacks, probe['errors'])} output cell(s)")
    if probe["raw"]:
        found.append(f"{name}: {probe['raw']} of {probe['math']} math element(s) shown as raw LaTeX")
    for context in machine_paths(probe.get("text", ""), probe["outputs"], root):
        found.append(f"{name}: machine path in the page's text: …{context}…")
    return found


class Browser:
    """One headless Chromium, driven over the DevTools protocol, one page (tab) reused for every URL."""

    def __init__(self, executable: str, width: int = 1280, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="sercore-browser-")
        self.process = subprocess.Popen([executable, *FLAGS, "--remote-debugging-port=0",
                                         f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                                         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.width, self.height = width, height
        self.socket = None
        self.next_id = 0

    async def start(self, timeout: float = 30) -> None:
        from tornado.httpclient import AsyncHTTPClient
        from tornado.websocket import websocket_connect

        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not port_file.is_file() or not port_file.read_text().strip():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the browser did not start (exit status {self.process.poll()})")
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = json.loads((await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/json")).body)
        page = next(t for t in targets if t["type"] == "page")
        self.socket = await websocket_connect(page["webSocketDebuggerUrl"], max_message_size=256 * 2**20)
        await self.call("Page.enable")

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        ident = self.next_id
        await self.socket.write_message(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.read_message())
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})

    async def visit(self, url: str, settle: float = 1.5, timeout: float = 60) -> dict:
        """Open `url`, wait for its load event and for MathJax to finish, return the probe's result."""
        await self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        while True:
            state = await self.call("Runtime.evaluate", expression="document.readyState", returnByValue=True)
            if state["result"].get("value") == "complete" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        # MathJax 3 typesets after load; its startup promise says when it is done
        await self.call("Runtime.evaluate", awaitPromise=True, returnByValue=True,
                        expression="(window.MathJax && MathJax.startup && MathJax.startup.promise) "
                                   "? MathJax.startup.promise.then(() => true) : true")
        await asyncio.sleep(settle)
        result = await self.call("Runtime.evaluate", expression=PROBE, returnByValue=True)
        return json.loads(result["result"]["value"])

    async def screenshot(self, path: Path) -> None:
        metrics = await self.call("Page.getLayoutMetrics")
        height = min(int(metrics["cssContentSize"]["height"]), 8000)  # the whole page, up to a limit
        await self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=max(height, self.height),
                        deviceScaleFactor=1, mobile=False)
        shot = await self.call("Page.captureScreenshot", format="png")
        await self.call("Emulation.clearDeviceMetricsOverride")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


async def check(html: Path, screenshots: Path, executable: str, root: Path = ROOT) -> list[str]:
    html = html.resolve()
    browser = Browser(executable)
    found = []
    try:
        await browser.start()
        for page in pages(html):
            probe = await browser.visit(page.as_uri())
            found += problems(page, html, probe, root)
            shot = screenshots / page.relative_to(html).with_suffix(".png")
            await browser.screenshot(shot)
            print(f"[browser] {page.relative_to(html)}: {len(probe['images'])} images, {probe['math']} math, "
                  f"screenshot {shot}", flush=True)
    finally:
        browser.close()
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html", nargs="?", default="_build/html", help="the built book (default: _build/html)")
    parser.add_argument("--screenshots", default="_build/screenshots", help="where the PNGs go")
    parser.add_argument("--browser", help=f"the browser to run (default: the first of {', '.join(BROWSERS)})")
    parser.add_argument("--root", default=str(ROOT),
                        help="the repository whose absolute path must not show (default: this script's clone)")
    args = parser.parse_args(argv)
    html = Path(args.html)
    if not (html / "index.html").is_file():
        print(f"check_browser: {html / 'index.html'}: no built book there (run make book first)", file=sys.stderr)
        return 2
    executable = find_browser(args.browser)
    if executable is None:
        print(f"check_browser: no browser found ({args.browser or ', '.join(BROWSERS)}); install one: "
              "apt-get install -y chromium", file=sys.stderr)
        return 2
    try:
        found = asyncio.run(check(html, Path(args.screenshots), executable, Path(args.root)))
    except RuntimeError as error:
        print(f"check_browser: {executable}: {error}", file=sys.stderr)
        return 2
    for line in found:
        print(f"[browser] FAIL {line}")
    print(f"[browser] {len(pages(html))} pages, {len(found)} problem(s); screenshots in {args.screenshots}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
