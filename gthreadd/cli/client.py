"""How `gthread` reaches a daemon: HTTP over the control socket (administration and reads), or
over the TCP port (reads only, with an API key when the daemon wants one). Standard library only,
so the CLI starts fast."""

import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Optional
from urllib.parse import urlsplit


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


@dataclass(frozen=True)
class ApiClient:
    socket_path: str = ""
    """Set: talk to the control socket; empty: to `server` over TCP."""
    server: str = "http://127.0.0.1:8000"
    api_key: str = ""

    @property
    def where(self) -> str:
        return f"the control socket {self.socket_path}" if self.socket_path else self.server

    def _connection(self, timeout: Optional[float]) -> http.client.HTTPConnection:
        if self.socket_path:
            return _UnixConnection(self.socket_path, timeout)
        url = urlsplit(self.server)
        cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
        return cls(url.netloc, timeout=timeout)

    def _headers(self, **more: str) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **more}
        if self.api_key and not self.socket_path:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def events(self, path: str) -> Iterator[tuple[str, str]]:
        """(event, data) of a server-sent event stream, as they come, until the daemon ends it."""
        conn = self._connection(None)
        try:
            try:
                conn.request("GET", path, headers=self._headers(Accept="text/event-stream"))
                response = conn.getresponse()
            except (OSError, http.client.HTTPException) as exc:
                raise ApiError(0, f"cannot reach gthreadd at {self.where}: {exc}") from None
            if response.status >= 400:
                _, error = _payload(response.read())
                raise ApiError(response.status, error or response.reason)
            event, data = "message", []
            for raw in response:
                line = raw.decode(errors="replace").rstrip("\r\n")
                if not line:
                    if data:
                        yield event, "\n".join(data)
                    event, data = "message", []
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
        finally:
            conn.close()

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> dict:
        conn = self._connection(timeout)
        headers = self._headers()
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            hint = " (is gthreadd running, and may you use its socket?)" if self.socket_path else ""
            raise ApiError(0, f"cannot reach gthreadd at {self.where}: {exc}{hint}") from None
        finally:
            conn.close()
        payload, error = _payload(data)
        if response.status >= 400:
            raise ApiError(response.status, error or response.reason)
        return payload


def _payload(data: bytes) -> tuple[dict, str]:
    """A response body's JSON, and the message of the OpenAI-style error in it (empty if none)."""
    try:
        payload = json.loads(data) if data else {}
    except ValueError:
        payload = {"error": {"message": data.decode(errors="replace")[:200]}}
    error = payload.get("error", {}) if isinstance(payload, dict) else {}
    return payload, (error.get("message", "") if isinstance(error, dict) else "")
