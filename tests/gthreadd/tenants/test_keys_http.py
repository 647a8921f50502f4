"""A keys file on the daemon's port, with the in-process daemon and FakeEngine: who is let in, to
which Models and views, within which limits; reloads on change, and a bad edit that keeps the last
good keys. tests/e2e/test_tenants.py runs the same with real engines."""

import asyncio
import functools
import logging
import sys

import aiohttp
import pytest

from gthreadd.daemon import StartupRefused
from gthreadd.tenants.charges import Charges
from gthreadd.tenants.keyring import Keyring, digest
from gthreadd.tenants.keys_file import parse_keys
from tests.fake_engine import FakeEngine
from tests.inprocess_daemon import serving, start_daemon, until, write

KEYS = f"""\
- name: team-a
  sha256: {digest("key-a")}
  models: [a]
  requestsPerMinute: 5
- name: team-b
  sha256: {digest("key-b")}
  maxConcurrent: 1
- name: ops
  sha256: {digest("key-ops")}
  admin: true
"""


@pytest.fixture
async def keyed(tmp_path):
    """Models a and b; a request with "slow" in its body takes up to 60 s (or until its client leaves)."""
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "keys.yaml").write_text(KEYS)
    d = await start_daemon(tmp_path, functools.partial(FakeEngine, reply_delay=60.0),
                           apiKeysFile=str(tmp_path / "keys" / "keys.yaml"))
    write(d, "a.yaml", "a")
    write(d, "b.yaml", "b")
    await serving(d, "a")
    await serving(d, "b")
    yield d
    await d.shutdown()


async def call(d, method: str, path: str, key: str | None, body: dict | None = None) -> tuple[int, dict | str, dict]:
    """(status, the JSON body or the text, headers)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as s:
        async with s.request(method, d.base_url + path, json=body, headers=headers) as r:
            reply = await r.json() if r.content_type == "application/json" else await r.text()
            return r.status, reply, dict(r.headers)


async def chat(d, key: str, model: str = "a", **more) -> tuple[int, dict, dict]:
    return await call(d, "POST", "/v1/chat/completions", key, {"model": model, "messages": [], **more})


async def test_an_unknown_key_is_a_401_in_the_shape_of_the_api_called(keyed):
    status, body, headers = await chat(keyed, "key-zzz")
    assert status == 401 and body["error"]["type"] == "AuthenticationError" and headers["WWW-Authenticate"] == "Bearer"
    status, body, _ = await call(keyed, "POST", "/v1/messages", None, {"model": "a", "messages": []})
    assert status == 401 and body["type"] == "error" and body["error"]["type"] == "authentication_error"
    assert (await call(keyed, "GET", "/healthz", None))[0] == 200


async def test_a_key_reaches_its_models_only_and_lists_only_them(keyed):
    assert (await chat(keyed, "key-a"))[0] == 200
    status, body, _ = await chat(keyed, "key-a", model="b")
    assert status == 403 and body["error"]["message"] == "key team-a may not use model b"
    assert (await call(keyed, "POST", "/b/v1/chat/completions", "key-a", {"messages": []}))[0] == 403
    assert (await call(keyed, "GET", "/b/v1/models", "key-a"))[0] == 403
    assert [m["id"] for m in (await call(keyed, "GET", "/v1/models", "key-a"))[1]["data"]] == ["a"]
    assert sorted(m["id"] for m in (await call(keyed, "GET", "/v1/models", "key-b"))[1]["data"]) == ["a", "b"]
    engine = keyed.fleet.models["b"].engines[0]
    assert not engine.received, "a refused request reaches no engine"


@pytest.mark.parametrize("path", ["/metrics", "/a/status", "/apis/greenthread.ai/v1alpha1/models",
                                  "/apis/greenthread.ai/v1alpha1/gpus"])
async def test_the_daemons_views_are_for_admin_keys(keyed, path):
    status, body, _ = await call(keyed, "GET", path, "key-b")
    assert status == 403 and body["error"]["message"] == f"key team-b may not read {path}: it is for admin keys"
    assert (await call(keyed, "GET", path, "key-ops"))[0] == 200


async def test_the_sixth_request_in_a_minute_is_a_429_with_retry_after(keyed):
    for _ in range(5):
        assert (await chat(keyed, "key-a"))[0] == 200
    status, body, headers = await chat(keyed, "key-a")
    assert status == 429 and body["error"]["message"] == "key team-a has sent its 5 requests per minute (requestsPerMinute)"
    assert 1 <= int(headers["Retry-After"]) <= 12
    assert (await chat(keyed, "key-b"))[0] == 200, "another key is not held back"
    text = (await call(keyed, "GET", "/metrics", "key-ops"))[1]
    assert 'gthread_key_refusals_total{key="team-a",reason="requests_per_minute"} 1.0' in text


async def test_max_concurrent_counts_a_keys_requests_in_flight(keyed):
    slow = asyncio.ensure_future(chat(keyed, "key-b", slow=True))
    engine = keyed.fleet.models["a"].engines[0]
    await until(lambda: any(body.get("slow") for _, _, body, _ in engine.received), "the slow request to run")
    status, body, _ = await chat(keyed, "key-b")
    assert status == 429 and "maxConcurrent 1" in body["error"]["message"]
    slow.cancel()
    await asyncio.gather(slow, return_exceptions=True)
    await until(lambda: keyed.keys.keyring.identify("key-b").in_flight == 0, "the slot to be given back")
    assert (await chat(keyed, "key-b"))[0] == 200


async def test_an_edit_takes_effect_and_a_broken_one_keeps_the_last_good_keys(keyed, tmp_path, caplog):
    path = tmp_path / "keys" / "keys.yaml"
    path.write_text(KEYS.replace("models: [a]", "models: [b]"))
    await until(lambda: keyed.keys.keyring.identify("key-a").may_use(("b",)), "the edit to apply")
    assert (await chat(keyed, "key-a", model="b"))[0] == 200
    caplog.set_level(logging.ERROR)
    path.write_text(KEYS.replace("requestsPerMinute: 5", "requestsPerMinut: 5"))
    await until(lambda: "refused" in caplog.text, "the broken file to be refused")
    assert f"{path}:4: [0].requestsPerMinut: unknown field" in caplog.text
    assert (await chat(keyed, "key-a", model="b"))[0] == 200, "the last good keys stay in force"


async def test_a_request_log_line_names_the_key_never_the_key_itself(keyed, capsys):
    from gthreadd.observe import logs

    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    logs.configure("info", {})
    try:
        assert (await chat(keyed, "key-a"))[0] == 200
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "POST /v1/chat/completions -> 200" in line]
    assert len(lines) == 1 and "[model=a key=team-a request_id=" in lines[0], lines
    assert "key-a" not in err.replace("key=team-a", "")


async def test_a_bad_keys_file_refuses_the_start(tmp_path):
    (tmp_path / "keys.yaml").write_text("- name: a\n  sha256: s3cret\n")
    with pytest.raises(StartupRefused) as refused:
        await start_daemon(tmp_path, apiKeysFile=str(tmp_path / "keys.yaml"))
    assert f"apiKeysFile: {tmp_path / 'keys.yaml'}:2: [0].sha256: expected the key's SHA-256 digest" in str(refused.value)


async def test_tokens_vllm_reports_are_charged_to_the_requests_key():
    """vLLM names requests after the X-Request-Id it was sent (chatcmpl-ID, cmpl-ID-0 per prompt)."""
    ring = Keyring.from_entries(parse_keys(f"- name: a\n  sha256: {digest('k')}\n  tokensPerMinute: 100\n",
                                           "k.yaml").entries, asyncio.get_running_loop().time())
    tenant = ring.identify("k")
    counted = []
    charges = Charges(lambda t, n: counted.append((t.name, n)))
    charges.expect("rid-1", tenant)
    charges.expect("rid-2", tenant)
    charges.finished("chatcmpl-rid-1", 70)
    charges.finished("cmpl-rid-2-0", 40)
    charges.finished("chatcmpl-someone-else", 1000)
    assert counted == [("a", 70), ("a", 40)]
    assert tenant.admit(asyncio.get_running_loop().time()).kind == "tokens_per_minute"


async def test_the_keys_are_listed_by_name_with_their_last_minute_never_a_digest(keyed, tmp_path):
    assert (await chat(keyed, "key-a"))[0] == 200
    assert (await call(keyed, "GET", "/apis/greenthread.ai/v1alpha1/keys", "key-a"))[0] == 403
    status, listing, _ = await call(keyed, "GET", "/apis/greenthread.ai/v1alpha1/keys", "key-ops")
    assert status == 200 and digest("key-a") not in str(listing)
    team_a = next(k for k in listing["items"] if k["name"] == "team-a")
    assert team_a == {"name": "team-a", "models": ["a"], "admin": False, "inFlight": 0,
                      "limits": {"requestsPerMinute": 5, "tokensPerMinute": None, "maxConcurrent": None},
                      "lastMinute": {"requests": 1, "tokens": 0}}
    cli = await asyncio.create_subprocess_exec(sys.executable, "-m", "gthreadd.cli.main", "--socket",
                                               str(tmp_path / "ctl.sock"), "get", "keys",
                                               stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await cli.communicate()
    lines = out.decode().splitlines()
    assert cli.returncode == 0 and lines[0].split() == ["NAME", "MODELS", "REQ/MIN", "TOKENS/MIN", "MAX-CONCURRENT",
                                                         "IN-FLIGHT", "REQUESTS(1M)", "TOKENS(1M)", "ADMIN"], err
    assert lines[1].split() == ["team-a", "a", "5", "<none>", "<none>", "0", "1", "0", "false"]
