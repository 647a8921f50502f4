"""The shim's side of the daemon's control socket: the same apply and delete `gthread` uses, and
the reads the shim turns into cluster status. asyncio, so one slow daemon call never stalls the
Lease renewals."""

import aiohttp

from gthreadd.spec.resource import API_PREFIX as API


class DaemonError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class DaemonClient:
    def __init__(self, socket_path: str, timeout_s: float = 60):
        self._socket_path = socket_path
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=self._socket_path),
                                              timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        assert self._session is not None, "DaemonClient.start() first"
        try:
            async with self._session.request(method, "http://gthreadd" + path, json=body) as response:
                payload = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DaemonError(0, f"cannot reach gthreadd at {self._socket_path}: {exc}") from None
        if response.status >= 400:
            errors = payload.get("errors") if isinstance(payload, dict) else None
            message = "; ".join(errors) if errors else (payload.get("error") or {}).get("message", response.reason)
            raise DaemonError(response.status, message)
        return payload

    async def apply(self, file: str, text: str, dry_run: bool = False) -> dict:
        return await self._call("POST", API + "/apply", {"file": file, "text": text, "dryRun": dry_run})

    async def delete(self, name: str) -> None:
        await self._call("DELETE", f"{API}/models/{name}")

    async def models(self) -> list[dict]:
        return (await self._call("GET", API + "/models"))["items"]

    async def gpus(self) -> list[dict]:
        return (await self._call("GET", API + "/gpus"))["items"]

    async def events(self, name: str) -> list[dict]:
        return (await self._call("GET", f"{API}/models/{name}/events"))["items"]
