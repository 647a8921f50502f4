"""A request's tokens charged to its key, as vLLM counted them: the engines' stats name each
finished request (streamed or not, whatever its client asked for in `usage`), so the daemon
remembers which key each request it handed an engine belongs to.

vLLM names a request after the X-Request-Id the daemon sends it (`chatcmpl-<id>`, `cmpl-<id>-<i>`
for a completion's i-th prompt, `embd-<id>`...), and reports it finished in the step after its
last output, which may be after its HTTP response has ended: a request is remembered until
charged, or for GRACE_S after its response.
"""

import asyncio
from typing import Callable, Optional

from gthreadd.tenants.keyring import Tenant

GRACE_S = 30.0


class Charges:
    def __init__(self, counted: Callable[[Tenant, int], None] = lambda tenant, tokens: None):
        """`counted`: told of every charge (the per-key token counter)."""
        self._pending: dict[str, Tenant] = {}
        self._counted = counted

    def expect(self, request_id: str, tenant: Tenant) -> None:
        self._pending[request_id] = tenant

    def done(self, request_id: str) -> None:
        """Its response has ended: its stats may still come, for a while."""
        if request_id in self._pending:
            asyncio.get_running_loop().call_later(GRACE_S, self._pending.pop, request_id, None)

    def finished(self, engine_request_id: Optional[str], tokens: int) -> None:
        """An engine finished a request (vLLM's stat logger, on the daemon's event loop)."""
        if not engine_request_id or not self._pending:
            return
        rest = engine_request_id.partition("-")[2]
        tenant = self._pending.get(rest) or self._pending.get(rest.rpartition("-")[0])
        if tenant is None:
            return
        tenant.charge(tokens, asyncio.get_running_loop().time())
        self._counted(tenant, tokens)
