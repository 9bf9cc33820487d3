"""A headless Chromium driven over the DevTools protocol, for tests and benchmarks of report.html.

Why the protocol and not `--dump-dom` or a script in the page: the page must run no script of
its own, and what a test needs — console errors, failed loads, exceptions, every image decoded,
timings, a screenshot — is reported by the browser itself as protocol events. The protocol runs
over `--remote-debugging-pipe` (file descriptors 3 and 4, NUL-separated JSON): no port to pick
or leak, nothing listening on the network. Errors are collected from `Runtime.exceptionThrown`,
`Runtime.consoleAPICalled` (error/assert) and `Log.entryAdded` at level error, which is where
the browser reports failed resource loads and Content-Security-Policy violations.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """The browser binary: $STYLEPIPE_CHROMIUM, else the first known name on PATH."""
    configured = os.environ.get("STYLEPIPE_CHROMIUM")
    if configured:
        return configured if shutil.which(configured) else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    """The browser did not answer as the protocol says it should."""


class Chromium:
    """One headless browser with one page; use as a context manager."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900, timeout: float = 60.0) -> None:
        self.binary, self.width, self.height, self.timeout = binary, width, height, timeout
        self.events: list[dict[str, Any]] = []
        self._replies: dict[int, dict[str, Any]] = {}
        self._incoming: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._next_id = 0
        self.session: str | None = None
        self._page_start = 0  # index in `events` where the open page's events begin

    # --- process and transport -----------------------------------------------------------------

    def __enter__(self) -> Chromium:
        self._profile = tempfile.mkdtemp(prefix="stylepipe-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        flags = ["--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                 "--disable-background-networking", "--disable-sync", "--mute-audio", "--hide-scrollbars",
                 "--remote-debugging-pipe", f"--user-data-dir={self._profile}", f"--window-size={self.width},{self.height}"]
        if os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to start its sandbox as root (CI containers)

        def onto_3_and_4() -> None:  # in the child: our pipe ends become the descriptors the protocol expects
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self._log = Path(self._profile) / "chromium.log"
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen([self.binary, *flags], pass_fds=(3, 4), preexec_fn=onto_3_and_4,
                                             stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        os.close(to_browser_r)
        os.close(from_browser_w)
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        for domain in ("Runtime", "Log", "Page"):
            self.call(f"{domain}.enable")
        self.viewport(self.width, self.height)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call("Browser.close", session=False, wait=False)
            self._process.wait(timeout=10)
        except Exception:
            self._process.kill()
            self._process.wait()
        finally:
            os.close(self._to_browser)
            shutil.rmtree(self._profile, ignore_errors=True)

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                self._incoming.put(None)
                os.close(self._from_browser)
                return
            buffer += chunk
            while b"\0" in buffer:
                message, buffer = buffer.split(b"\0", 1)
                self._incoming.put(json.loads(message))

    def _pump(self, deadline: float) -> None:
        """Take one message off the pipe: a reply is filed by id, an event appended to `events`."""
        try:
            message = self._incoming.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise BrowserError("timed out waiting for the browser") from None
        if message is None:
            raise BrowserError(f"the browser closed the pipe; its log ends: {self._log_tail()}")
        if "id" in message:
            self._replies[message["id"]] = message
        else:
            self.events.append(message)

    def call(self, method: str, params: dict[str, Any] | None = None, *, session: bool = True, wait: bool = True) -> dict[str, Any]:
        """Send one command and return its result; a protocol error raises BrowserError."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            raise BrowserError(f"the browser exited ({self._process.poll()}); its log ends: {self._log_tail()}") from None
        if not wait:
            return {}
        deadline = time.monotonic() + self.timeout
        while self._next_id not in self._replies:
            self._pump(deadline)
        reply = self._replies.pop(self._next_id)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_for(self, method: str, start: int = 0) -> dict[str, Any]:
        """The first event `method` at or after index `start` of `events`, waiting for it."""
        deadline = time.monotonic() + self.timeout
        while True:
            for event in self.events[start:]:
                if event.get("method") == method:
                    return event
            self._pump(deadline)

    def _log_tail(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    # --- what tests use --------------------------------------------------------------------------

    def viewport(self, width: int, height: int, *, mobile: bool = False, scale: float = 1.0) -> None:
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": mobile})

    def open(self, url: str) -> float:
        """Navigate and wait for the load event; returns the seconds it took.

        A blank page first, so that loads the previous page aborts are not counted as this one's.
        """
        for address in ("about:blank", url):
            self._page_start = len(self.events)
            began = time.perf_counter()
            self.call("Page.navigate", {"url": address})
            self.wait_for("Page.loadEventFired", self._page_start)
        return time.perf_counter() - began

    def evaluate(self, expression: str) -> Any:
        """A JavaScript expression's value, run by the test (never by the page), promises awaited."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def broken_images(self) -> list[str]:
        """Load every image now (lazy ones included) and list those that did not decode."""
        return self.evaluate("""(async () => {
            const images = [...document.images];
            images.forEach(img => { img.loading = 'eager'; });
            await Promise.all(images.map(img => img.decode().catch(() => null)));
            return images.filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.getAttribute('src'));
        })()""")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the open page caused so far."""
        self.call("Runtime.evaluate", {"expression": "0"})  # flush events queued before now
        found = []
        for event in self.events[self._page_start:]:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {[a.get('value') for a in params.get('args', [])]}")
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                found.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        return found

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """A picture of the viewport (or the whole page): JPEG (quality 80) for .jpg, else PNG."""
        jpeg = path.suffix.lower() in (".jpg", ".jpeg")
        params: dict[str, Any] = {"format": "jpeg", "quality": 80} if jpeg else {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", params)["data"]))
        return path
