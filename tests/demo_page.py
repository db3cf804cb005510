"""Drive `fastddpm demo` in headless Chromium (Playwright): used by test_demo_browser.py, and run as a script it
takes the docs' screenshot of the page with the shipped model:

    python tests/demo_page.py docs/demo.png
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

CHROMIUM = Path(os.environ.get("FASTDDPM_CHROMIUM", "/usr/bin/chromium"))
ROOT = Path(__file__).resolve().parent.parent
STATUS = "#status textarea"


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    try:
        import gradio  # noqa: F401
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        return f"needs gradio and playwright (pip install 'fastddpm[demo]' playwright): {err}"
    if not (CHROMIUM.exists() or shutil.which(str(CHROMIUM))):
        return f"needs Chromium at {CHROMIUM} (apt-get install -y chromium, or set FASTDDPM_CHROMIUM)"
    return None


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as server:
        return server.getsockname()[1]


@contextlib.contextmanager
def served(model: Path | None, timeout: float = 180.0) -> Iterator[str]:
    """`fastddpm demo` in a subprocess on a free port; yields its URL once it answers, stops it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "fastddpm", "demo", "--device", "cpu", "--port", str(port)]
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        command + (["--model", str(model)] if model else []),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"fastddpm demo exited {server.returncode}:\n{server.stdout.read()}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(url, timeout=5).close()
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"fastddpm demo did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@contextlib.contextmanager
def browser_page(width: int = 1280, height: int = 900):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def clear_objects(page) -> None:
    page.locator("#objects [title=Clear]").click()


def add_object(page, name: str) -> None:
    """Pick (or type) one object in the objects box."""
    box = page.locator("#objects input")
    box.click()
    box.fill(name)
    box.press("Enter")
    page.keyboard.press("Escape")


def generate(page, timeout_ms: float = 180_000) -> str:
    """Click Generate and return the status line once it changes (a fresh page: once it is shown)."""
    status = page.locator(STATUS)
    before = status.input_value()
    page.locator("#generate").click()
    page.wait_for_function(
        f"before => document.querySelector('{STATUS}').value !== before",
        arg=before,
        timeout=timeout_ms,
        polling=250,
    )
    return status.input_value().strip()


def screenshot(out: Path) -> None:
    """The page with the shipped model: red sphere + cyan cube, DPM-Solver++ 10 steps, 4 images."""
    with served(None) as url, browser_page(width=1100, height=940) as page:
        page.goto(url)
        status = generate(page)
        assert status.startswith("4 images in"), status
        page.screenshot(path=str(out), type="png")


if __name__ == "__main__":
    reason = missing()
    if reason:
        sys.exit(reason)
    screenshot(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "demo.png")
