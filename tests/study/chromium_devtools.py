"""A headless Chromium driven over the Chrome DevTools protocol, for the report's browser tests.

The browser listens on 127.0.0.1 on a port it picks (`--remote-debugging-port=0`) and writes it to
`DevToolsActivePort` in its throw-away profile; one websocket to the browser carries every
command, with pages attached as flat sessions. `open(url)` loads a page and tells what a reader
would see: each image's decoded size, each table's rows and rendered size, and every console
error, log error and uncaught exception the page produced.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import websocket

from cnnlab.study.pdf import headless_args

PAGE_FACTS_JS = """(async () => {
  const images = Array.from(document.images);
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  return {
    title: document.title,
    headings: Array.from(document.querySelectorAll('h1, h2, h3')).map(h => h.textContent),
    content_width: document.body.clientWidth,
    images: images.map(img => ({alt: img.alt, complete: img.complete, width: img.naturalWidth,
                                height: img.naturalHeight, shown_width: img.getBoundingClientRect().width})),
    row_breaks: Array.from(new Set(Array.from(document.querySelectorAll('tr'),
                                              tr => getComputedStyle(tr).breakInside))),
    tables: Array.from(document.querySelectorAll('table')).map(t => ({
      rows: Array.from(t.tBodies).reduce((n, body) => n + body.rows.length, 0),
      columns: t.tHead && t.tHead.rows.length ? t.tHead.rows[0].cells.length : 0,
      width: t.getBoundingClientRect().width, height: t.getBoundingClientRect().height})),
  };
})()"""


@dataclass
class PageFacts:
    title: str
    headings: list[str]
    content_width: float
    images: list[dict]
    row_breaks: list[str]  # the distinct `break-inside` values of the table rows
    tables: list[dict]
    errors: list[str] = field(default_factory=list)


class DevToolsBrowser:
    def __init__(self, browser: str, profile: Path, timeout: float = 30.0):
        self.timeout = timeout
        profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            headless_args(browser, profile) + ["--remote-debugging-port=0", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self._next_id = 0
        self._events: list[dict] = []
        try:
            port, path = self._active_port(profile / "DevToolsActivePort")
            # no Origin header: Chromium refuses websocket clients that send one it was not told to allow
            self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=timeout,
                                                  suppress_origin=True)
        except BaseException:
            self._kill()
            raise

    def _active_port(self, file: Path) -> tuple[int, str]:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the browser exited with code {self.proc.returncode} before listening")
            lines = file.read_text().split("\n") if file.is_file() else []
            if len(lines) >= 2 and lines[0].isdigit() and lines[1].startswith("/devtools/"):
                return int(lines[0]), lines[1]
            time.sleep(0.05)
        raise TimeoutError(f"the browser wrote no {file.name} within {self.timeout} s")

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def _receive(self) -> dict:
        message = json.loads(self.ws.recv())
        if "method" in message:
            self._events.append(message)
        return message

    def _wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e["method"] == method and e.get("sessionId") == session for e in self._events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} within {self.timeout} s")
            self._receive()

    def open(self, url: str, media: str = "screen") -> PageFacts:
        """Load `url` in a new page laid out for `media` ("print": as for the PDF) and return what it
        shows and every error it reported."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Runtime", "Log", "Page"):
                self.send(f"{domain}.enable", session=session)
            self.send("Emulation.setEmulatedMedia", {"media": media}, session=session)
            self._events.clear()
            self.send("Page.navigate", {"url": url}, session=session)
            self._wait_for("Page.loadEventFired", session)
            result = self.send("Runtime.evaluate", {"expression": PAGE_FACTS_JS, "returnByValue": True,
                                                    "awaitPromise": True}, session=session)
            if "exceptionDetails" in result:
                raise RuntimeError(f"evaluating the page facts failed: {result['exceptionDetails']}")
            facts = PageFacts(**result["result"]["value"])
            facts.errors = [_error_text(e) for e in self._events if e.get("sessionId") == session and _error_text(e)]
            return facts
        finally:
            self.send("Target.closeTarget", {"targetId": target})

    def close(self) -> None:
        try:
            self.send("Browser.close")
            self.proc.wait(timeout=10)
        except Exception:  # a browser that will not close is stopped below
            pass
        finally:
            self.ws.close()
            self._kill()

    def _kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


def _error_text(event: dict) -> str | None:
    params = event.get("params", {})
    if event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        return "console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
    if event["method"] == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
        return "log: " + params["entry"].get("text", "")
    if event["method"] == "Runtime.exceptionThrown":
        details = params.get("exceptionDetails", {})
        return "exception: " + details.get("exception", {}).get("description", details.get("text", ""))
    return None
