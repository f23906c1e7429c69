"""Open every page of the built book in headless Chromium and fail on anything broken.

For each page listed in ``_toc.yml`` this loads ``_build/html/<page>.html`` (over ``file://``,
the way a reader opens the book, or over a local HTTP server with ``--serve``) and fails on:

* a request to anything but the local files (the book must work offline),
* a failed request (a missing file) or an HTTP error status,
* an uncaught JavaScript exception, or a console error that is not on the allow-list below,
* an ``<img>`` that did not load (``naturalWidth == 0``), or a Graphviz ``<object>`` with no size,
* math that MathJax did not typeset (a ``.math`` element without ``mjx-container``) or typeset
  with an error (``mjx-merror``, or an undefined macro shown in red),
* embedded ipywidgets that the widget manager did not render.

A full-page screenshot of each page goes to ``_build/screenshots/<page>.png``.

Uses Playwright with the system Chromium (Debian ``chromium``); Playwright's own browser
download is never used. Run ``make check-site``, or::

    .venv/bin/python tools/check_site.py --html _build/html --toc _toc.yml
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import yaml
from playwright.sync_api import ConsoleMessage, Error, Page, Request, Response, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Console errors and page errors known to be harmless, each matched as a regex against the
# message text. Keep this list short and explain every entry.
ALLOWED_MESSAGES = [
    # sphinx-thebe's script is included twice by Jupyter Book and re-declares a `const`.
    re.compile(r"Identifier 'THEBE_JS_URL' has already been declared"),
    # The theme's mode switcher logs this when the page has no stored light/dark preference.
    re.compile(r"Got invalid theme mode"),
    # The ipywidgets HTML manager calls the MathJax 2 `Hub.Queue` API; the book uses MathJax 3.
    re.compile(r"MathJax\.Hub|reading 'Queue'|Queue is not a function"),
]

# Schemes that never leave the machine.
LOCAL_SCHEMES = {"file", "data", "blob", "about", "chrome-extension"}
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


@dataclass
class PageReport:
    """What happened while one page loaded."""

    name: str
    requests: int = 0
    problems: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def toc_pages(toc_path: Path) -> list[str]:
    """Return the docnames in `_toc.yml` (root first), in reading order."""
    toc = yaml.safe_load(toc_path.read_text())
    pages = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key, []))

    for key in ("parts", "chapters", "sections"):
        walk(toc.get(key, []))
    return [re.sub(r"\.(md|ipynb|rst)$", "", page) for page in pages]


def is_local(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in LOCAL_SCHEMES:
        return True
    return parsed.scheme in ("http", "https") and parsed.hostname in LOCAL_HOSTS


def is_allowed(message: str) -> bool:
    return any(pattern.search(message) for pattern in ALLOWED_MESSAGES)


# Runs in the page once it has loaded: waits for MathJax and the images, then reports counts.
PAGE_PROBE = """
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const images = [...document.querySelectorAll('img')];
  for (const img of images) { img.loading = 'eager'; }
  await Promise.all(images.map(img => img.complete ? null :
      new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
  // TeX sources that gave an error (mjx-merror) or an undefined macro (which MathJax's
  // `noundefined` extension typesets in red)
  const bad = 'mjx-merror, [style*="color: red"]';
  const mathErrors = () => {
    const doc = window.MathJax && MathJax.startup && MathJax.startup.document;
    if (!doc) return [...document.querySelectorAll(bad)].map(() => '?');
    return [...doc.math].filter(item => item.typesetRoot && item.typesetRoot.querySelector(bad))
                        .map(item => item.math.slice(0, 60));
  };
  const math = [...document.querySelectorAll('.math')];
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const objects = [...document.querySelectorAll('object[type="image/svg+xml"]')];
  return {
    math: math.length,
    math_unrendered: math.filter(el => !el.querySelector('mjx-container')).map(el => el.textContent.slice(0, 60)),
    math_errors: mathErrors(),
    mathjax_loaded: !!(window.MathJax && MathJax.version),
    images: images.length,
    broken_images: images.filter(img => img.naturalWidth === 0).map(img => img.getAttribute('src')),
    svg_objects: objects.length,
    empty_objects: objects.filter(o => o.offsetWidth < 10 || o.offsetHeight < 10).map(o => o.getAttribute('data')),
    widget_views: views.length,
    widgets_rendered: document.querySelectorAll('.jupyter-widgets, .widget-box, .widget-inline-hbox').length,
  };
}
"""


# Runs in the frame of an SVG <object>: is there a drawing in it?
SVG_PROBE = (
    "() => document.documentElement.localName === 'svg' && !!document.querySelector('text, path')"
)


def wait_until_idle(
    page: Page, pending: set[Request], deadline: float, quiet_ms: int = 500
) -> None:
    """Wait until no request has been in flight for `quiet_ms`; raise past `deadline`."""
    quiet_since = None
    while True:
        now = time.monotonic()
        if pending:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_ms / 1000:
            return
        if now > deadline:
            urls = ", ".join(sorted(request.url for request in pending)[:5])
            raise Error(f"requests still in flight at the time limit: {urls}")
        page.wait_for_timeout(100)


def check_page(page: Page, url: str, report: PageReport, screenshot: Path, timeout_ms: int) -> None:
    """Load `url` in `page`, record every problem in `report`, save a screenshot."""
    start = time.monotonic()
    pending: set[Request] = set()  # requests in flight; Playwright's "networkidle" never fires
    # for a page with an SVG <object> over file://, so the check tracks them itself.

    def on_request(request: Request) -> None:
        report.requests += 1
        pending.add(request)
        if not is_local(request.url):
            report.problems.append(f"request to a non-local URL: {request.url}")

    def on_request_finished(request: Request) -> None:
        pending.discard(request)

    def on_request_failed(request: Request) -> None:
        pending.discard(request)
        report.problems.append(f"request failed ({request.failure}): {request.url}")

    def on_response(response: Response) -> None:
        if response.status >= 400:
            report.problems.append(f"HTTP {response.status}: {response.url}")

    def on_console(message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        text = f"console error: {message.text} ({message.location.get('url', '')})"
        (report.allowed if is_allowed(message.text) else report.problems).append(text)

    def on_page_error(error: Error) -> None:
        text = f"page error: {error.message}"
        (report.allowed if is_allowed(error.message) else report.problems).append(text)

    page.on("request", on_request)
    page.on("requestfinished", on_request_finished)
    page.on("requestfailed", on_request_failed)
    page.on("response", on_response)
    page.on("console", on_console)
    page.on("pageerror", on_page_error)
    try:
        page.goto(url, wait_until="load", timeout=timeout_ms)
        stats = page.evaluate(PAGE_PROBE)
        wait_until_idle(page, pending, deadline=start + timeout_ms / 1000)
        stats["svg_drawn"] = sum(
            1
            for frame in page.frames[1:]
            if frame.url.endswith(".svg") and frame.evaluate(SVG_PROBE)
        )
        # Chromium does not paint <object> frames outside the viewport into a full-page
        # screenshot: make the viewport as tall as the page first.
        width = page.viewport_size["width"]
        height = page.evaluate("document.documentElement.scrollHeight")
        page.set_viewport_size({"width": width, "height": min(height, 30_000)})
        page.wait_for_timeout(300)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    except Error as exc:
        report.problems.append(f"could not load the page: {exc.message.splitlines()[0]}")
        return
    finally:
        for event, handler in [
            ("request", on_request),
            ("requestfinished", on_request_finished),
            ("requestfailed", on_request_failed),
            ("response", on_response),
            ("console", on_console),
            ("pageerror", on_page_error),
        ]:
            page.remove_listener(event, handler)
        report.seconds = time.monotonic() - start

    if stats["math"] and not stats["mathjax_loaded"]:
        report.problems.append("the page has math but MathJax did not load")
    for text in stats["math_unrendered"]:
        report.problems.append(f"math not typeset by MathJax: {text!r}")
    for text in stats["math_errors"]:
        report.problems.append(f"MathJax could not typeset (error or undefined macro): {text!r}")
    for src in stats["broken_images"]:
        report.problems.append(f"image did not load (naturalWidth 0): {src}")
    for data in stats["empty_objects"]:
        report.problems.append(f"SVG diagram has no size: {data}")
    if stats["svg_drawn"] < stats["svg_objects"]:
        report.problems.append(
            f"only {stats['svg_drawn']} of {stats['svg_objects']} SVG diagrams loaded a drawing"
        )
    if stats["widget_views"] and not stats["widgets_rendered"]:
        report.problems.append(f"{stats['widget_views']} widget view(s) embedded, none rendered")
    report.stats = {key: value for key, value in stats.items() if isinstance(value, (int, bool))}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve `directory` on 127.0.0.1 (a free port) in a daemon thread; return server and base URL."""
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", type=Path, default=Path("_build/html"), help="built HTML folder")
    parser.add_argument("--toc", type=Path, default=Path("_toc.yml"), help="the book's _toc.yml")
    parser.add_argument("--screenshots", type=Path, default=Path("_build/screenshots"))
    parser.add_argument(
        "--serve",
        action="store_true",
        help="load pages from a server on 127.0.0.1 instead of file://",
    )
    parser.add_argument(
        "--chromium",
        default=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        help="Chromium executable (default: $CHROMIUM or /usr/bin/chromium)",
    )
    parser.add_argument("--timeout", type=float, default=60, help="seconds allowed per page")
    args = parser.parse_args(argv)

    html = args.html.resolve()
    if not (html / "index.html").is_file():
        print(f"FAIL: {html}/index.html not found; build the book first (make book)")
        return 1
    if not Path(args.chromium).is_file():
        print(
            f"FAIL: Chromium not found at {args.chromium} (apt-get install chromium, or set $CHROMIUM)"
        )
        return 1

    pages = toc_pages(args.toc)
    missing = [name for name in pages if not (html / f"{name}.html").is_file()]
    if missing:
        print("FAIL: pages listed in the toc were not built: " + ", ".join(missing))
        return 1
    # Screenshot names: the page's file name, or its whole path if two pages share a name.
    stems = [Path(name).name for name in pages]
    shot_names = [
        stem if stems.count(stem) == 1 else name.replace("/", "__")
        for stem, name in zip(stems, pages)
    ]

    server = None
    if args.serve:
        server, base = serve(html)
    else:
        base = html.as_uri() + "/"

    reports: list[PageReport] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        # The root index.html only redirects to the root page; check that it does.
        page = context.new_page()
        page.goto(base + "index.html", wait_until="load")
        try:
            page.wait_for_url(f"**/{pages[0]}.html", timeout=10_000)
            print(f"ok    {'index.html':<32} redirects to {pages[0]}.html")
        except Error:
            print(f"FAIL  index.html does not redirect to {pages[0]}.html (ended at {page.url})")
            reports.append(PageReport("index.html", problems=["bad redirect"]))
        page.close()
        for name, shot_name in zip(pages, shot_names):
            report = PageReport(name)
            page = context.new_page()
            screenshot = args.screenshots / f"{shot_name}.png"
            check_page(page, base + f"{name}.html", report, screenshot, int(args.timeout * 1000))
            page.close()
            reports.append(report)
            s = report.stats
            status = "FAIL" if report.problems else "ok  "
            print(
                f"{status}  {name:<32} {report.seconds:4.1f}s  requests={report.requests:<3} "
                f"math={s.get('math', 0)} images={s.get('images', 0)} "
                f"diagrams={s.get('svg_objects', 0)} widgets={s.get('widget_views', 0)} "
                f"allowed={len(report.allowed)}  -> {screenshot}"
            )
            for problem in report.problems:
                print(f"      - {problem}")
            for message in report.allowed:
                print(f"      ~ allowed: {message}")
        browser.close()
    if server is not None:
        server.shutdown()

    failed = [report.name for report in reports if report.problems]
    if failed:
        print(f"check-site: FAILED on {len(failed)} of {len(reports)} page(s): {', '.join(failed)}")
        return 1
    print(
        f"check-site: all {len(reports)} page(s) passed, loaded offline "
        f"(screenshots in {args.screenshots})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
