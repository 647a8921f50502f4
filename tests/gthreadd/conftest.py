import pytest

from tests.inprocess_daemon import start_daemon


@pytest.fixture
async def daemon(tmp_path):
    """A daemon in this test's event loop with FakeEngine (tests/inprocess_daemon.py)."""
    d = await start_daemon(tmp_path)
    yield d
    await d.shutdown()
