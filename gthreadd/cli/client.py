"""How `gthread` reaches a daemon: HTTP over the control socket (administration and reads), or
over the TCP port (reads only, with an API key when the daemon wants one). Standard library only,
so the CLI starts fast."""

import http.client
import json
import socket
from dataclasses import dataclass
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

    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 30) -> dict:
        if self.socket_path:
            conn: http.client.HTTPConnection = _UnixConnection(self.socket_path, timeout)
        else:
            url = urlsplit(self.server)
            cls = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
            conn = cls(url.netloc, timeout=timeout)
        headers = {"Content-Type": "application/json"}
        if self.api_key and not self.socket_path:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            hint = " (is gthreadd running, and may you use its socket?)" if self.socket_path else ""
            raise ApiError(0, f"cannot reach gthreadd at {self.where}: {exc}{hint}") from None
        finally:
            conn.close()
        try:
            payload = json.loads(data) if data else {}
        except ValueError:
            payload = {"error": {"message": data.decode(errors="replace")[:200]}}
        if response.status >= 400:
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            raise ApiError(response.status, error.get("message") or response.reason)
        return payload
