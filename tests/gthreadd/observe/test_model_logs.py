import asyncio

from gthreadd.observe.model_logs import ModelLogs

DAEMON_LINE = "2026-11-25 01:22:46,297 INFO gthreadd.api.http: POST /v1/chat/completions -> 200 in 0.1s [model=m3 request_id=ab]"
ENGINE_LINE = "(EngineCore pid=7804) INFO 11-25 01:22:17 [core.py:133] Initializing a V1 LLM engine"


def test_lines_are_told_apart_by_their_model_tag_and_by_their_engine_process():
    logs = ModelLogs()
    logs.add(DAEMON_LINE)
    logs.add(ENGINE_LINE)
    logs.add("(EngineCore pid=9999) a line of a process nobody owns")
    logs.add("a line about nothing in particular")
    assert logs.tail("m3", 10) == [DAEMON_LINE]
    logs.own([7804], "m0")
    assert logs.tail("m0", 10) == [ENGINE_LINE], "lines written before the pid was named move over"
    logs.add(ENGINE_LINE + " again")
    assert logs.tail("m0", 10) == [ENGINE_LINE, ENGINE_LINE + " again"]
    assert logs.tail("m0", 1) == [ENGINE_LINE + " again"] and logs.tail("m0", 0) == []


def test_a_ring_keeps_the_newest_lines_and_a_deleted_model_forgets_them():
    logs = ModelLogs(limit=3)
    for i in range(5):
        logs.add(f"line {i} [model=a]")
    assert logs.tail("a", 10) == [f"line {i} [model=a]" for i in (2, 3, 4)]
    logs.own([1], "a")
    logs.forget("a")
    logs.add("(EngineCore pid=1) after")
    assert logs.tail("a", 10) == [], "its lines and its processes' names are gone"


async def test_a_follower_gets_lines_added_from_another_thread():
    logs = ModelLogs()
    queue = logs.follow("m3")
    await asyncio.to_thread(logs.add, DAEMON_LINE)
    assert await asyncio.wait_for(queue.get(), 1) == DAEMON_LINE
    logs.unfollow("m3", queue)
    await asyncio.to_thread(logs.add, DAEMON_LINE)
    await asyncio.sleep(0.01)
    assert queue.empty()


def test_an_engine_is_known_by_the_served_name_in_its_first_line_so_a_failed_boot_keeps_its_lines():
    logs = ModelLogs()
    logs.serves("m0", "m0")
    logs.serves("x", "shared/id")
    logs.serves("y", "shared/id")
    logs.add("(EngineCore pid=5) INFO [__init__.py:113] Registered model loader")
    logs.add("(EngineCore pid=5) INFO [core.py:133] Initializing a V1 LLM engine with config: model='/c', "
             "served_model_name=m0, enable_prefix_caching=True")
    logs.add("(EngineCore pid=5) ERROR [core.py:900] EngineCore failed to start.")
    assert [line.split("] ")[1][:12] for line in logs.tail("m0", 10)] == ["Registered m", "Initializing", "EngineCore f"]
    logs.add("(EngineCore pid=6) INFO Initializing a V1 LLM engine with config: served_model_name=shared/id, x=1")
    assert logs.tail("x", 10) == [] and logs.tail("y", 10) == [], "two Models share that name: no guess"
