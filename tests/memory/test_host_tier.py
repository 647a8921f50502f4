"""The host tier: staging converted models into shared memory under a byte budget, LRU eviction,
pinned models staying, leases, corruption, and the engine side's view of a segment. Small
synthetic models; tests/e2e serves the real one from the host tier."""

import errno
import os
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conversion.converter import convert
from memory.store_format import ChecksumError, Manifest
from memory.disk_tier import tensors
from memory.host_segment import SEGMENT_PREFIX, map_segment
from memory.host_tier import HostTier, HostTierBusy, Segment, choose_victims

MiB = 2**20


class FakeClock:
    """A test double for time.monotonic: advances only when told."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def model(tmp_path: Path, name: str, mib: int) -> Path:
    """A converted model of `mib` MiB of weights in tmp_path/store/name."""
    src = tmp_path / f"src-{name}"
    src.mkdir()
    save_file({"w": torch.full((mib * MiB // 4,), float(len(name)))}, src / "model.safetensors")
    (src / "config.json").write_text("{}")
    return convert(src, tmp_path / "store", name, {"modelName": name}, None)


@pytest.fixture
def tier(tmp_path) -> HostTier:
    tier = HostTier(tmp_path / "shm", budget=10 * MiB, clock=FakeClock())
    tier.start()
    yield tier
    tier.close()


def load(tier: HostTier, owner: str, weights: Path, pinned: bool = False):
    """Stage and release at once, as a boot that finished loading does."""
    path = tier.stage(owner, weights, pinned)
    if path is not None:
        tier.release(weights)
    return path


def resident(tier: HostTier) -> set[str]:
    """The models whose segments are in the directory (files of ours other than the lock)."""
    return {p.name.removeprefix(SEGMENT_PREFIX) for p in tier.directory.glob(f"{SEGMENT_PREFIX}*")}


def test_a_staged_segment_holds_the_verified_weights_for_an_engine_to_map(tier, tmp_path):
    weights = model(tmp_path, "a", 2)
    path = tier.stage("a", weights, pinned=False)
    assert path == tier.directory / "gthread-a" and tier.tier("a") == "system" and tier.used == 2 * MiB
    segment = map_segment(path)
    (name, tensor), = tensors(Manifest.read(weights), segment.buffer)
    assert name == "w" and torch.equal(tensor, torch.full((MiB // 2,), 1.0))
    del tensor
    segment.close()
    assert map_segment(tier.directory / "absent") is None


def test_least_recently_used_unpinned_segments_make_room(tier, tmp_path):
    a, b, c = (model(tmp_path, n, 4) for n in "abc")
    load(tier, "a", a)
    load(tier, "b", b)
    load(tier, "a", a)  # a is now more recent than b
    assert load(tier, "c", c) is not None
    assert resident(tier) == {"a", "c"} and tier.tier("b") == "disk"
    assert tier.used <= tier.budget


def test_pinned_models_stay_however_old(tier, tmp_path):
    a, b, c = (model(tmp_path, n, 4) for n in "abc")
    load(tier, "a", a, pinned=True)
    load(tier, "b", b)
    load(tier, "b", b)
    load(tier, "c", c)
    assert resident(tier) == {"a", "c"}


def test_without_room_a_model_loads_from_disk_and_nothing_is_evicted(tier, tmp_path):
    a, b, big = model(tmp_path, "a", 4), model(tmp_path, "b", 4), model(tmp_path, "big", 8)
    load(tier, "a", a, pinned=True)
    tier.stage("b", b, pinned=False)  # leased: an engine is loading from it
    assert tier.stage("big", big, pinned=False) is None
    assert resident(tier) == {"a", "b"} and tier.tier("big") == "disk"
    tier.release(b)
    assert load(tier, "big", big) is None, "a pinned 4 MiB and an 8 MiB model exceed 10 MiB"
    tier.set_pinned("a", False)
    assert load(tier, "big", big) is not None and resident(tier) == {"big"}


def test_an_engines_reservation_counts_against_the_budget_and_evicts_like_a_stage(tier, tmp_path):
    a, b = model(tmp_path, "a", 4), model(tmp_path, "b", 4)
    load(tier, "a", a)
    load(tier, "b", b, pinned=True)
    assert tier.reserve("m/kv-cache/0", 5 * MiB), "a (unpinned) makes room"
    assert resident(tier) == {"b"} and tier.used == 9 * MiB
    usage = tier.usage()
    assert (usage.weights, usage.reserved, usage.budget) == (4 * MiB, 5 * MiB, 10 * MiB)
    assert load(tier, "a", a) is None, "neither the reservation nor a pinned model is evicted: a reads the disk"
    assert not tier.reserve("n/kv-cache/0", 6 * MiB) and tier.usage().reserved == 5 * MiB
    assert tier.reserve("m/kv-cache/0", 6 * MiB), "reserving again replaces the holder's reservation"
    assert tier.used == 10 * MiB
    tier.unreserve("m/kv-cache/0")
    assert tier.used == 4 * MiB and tier.usage().reserved == 0


def test_a_model_too_big_for_the_whole_budget_loads_from_disk(tier, tmp_path):
    assert load(tier, "huge", model(tmp_path, "huge", 11)) is None and not resident(tier)


def test_forget_frees_what_no_other_model_wants(tier, tmp_path):
    a = model(tmp_path, "a", 2)
    load(tier, "x", a)
    load(tier, "y", a)  # two Models, one checkpoint: one segment
    assert tier.used == 2 * MiB
    tier.forget("x")
    assert resident(tier) == {"a"}
    tier.forget("y")
    assert not resident(tier) and tier.used == 0


def test_an_edited_model_lets_its_old_weights_go(tier, tmp_path):
    old, new = model(tmp_path, "old", 2), model(tmp_path, "new", 2)
    load(tier, "m", old, pinned=True)
    load(tier, "m", new, pinned=True)
    assert tier.tier("m") == "system"
    assert load(tier, "other", model(tmp_path, "other", 8)) is not None
    assert resident(tier) == {"new", "other"}, "the old weights are no longer pinned by anyone"


def test_corrupt_weights_are_refused_and_leave_nothing_behind(tier, tmp_path):
    a = model(tmp_path, "a", 2)
    with open(a / "weights.gthread", "r+b") as f:
        f.seek(MiB)
        f.write(b"\x01")
    with pytest.raises(ChecksumError, match="chunk 0"):
        tier.stage("a", a, pinned=True)
    assert not resident(tier) and tier.used == 0 and tier.tier("a") == "disk"


def test_a_full_tmpfs_means_disk_not_a_crash(tier, tmp_path, monkeypatch):
    def no_space(fd, offset, length):  # test double: tmpfs out of space
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    assert tier.stage("a", model(tmp_path, "a", 2), pinned=False) is None
    assert not resident(tier) and tier.used == 0


def test_concurrent_stages_of_one_model_fill_it_once(tier, tmp_path):
    a = model(tmp_path, "a", 4)
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(tier.stage(f"r{i}", a, False))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [tier.path("a")] * 4 and tier.used == 4 * MiB
    assert tier.bytes_from_disk == 4 * MiB, "read from disk once"
    assert tier.bytes_to_engines == 4 * 4 * MiB, "handed to each of the four"


def test_start_clears_a_dead_daemons_segments_and_nothing_else(tmp_path):
    """hostTierDir may be /dev/shm itself: the tier once deleted every file in it at start."""
    shm = tmp_path / "shm"
    shm.mkdir()
    for ours in ("gthread-stale", ".gthread-half.fill"):
        (shm / ours).write_bytes(b"x")
    (shm / "another-programs-segment").write_bytes(b"theirs")
    tier = HostTier(shm, budget=MiB)
    assert (shm / "gthread-stale").exists(), "a constructor has no side effects"
    tier.start()
    assert not (shm / "gthread-stale").exists() and not (shm / ".gthread-half.fill").exists()
    tier.close()
    assert (shm / "another-programs-segment").read_bytes() == b"theirs"


def test_a_second_daemon_on_the_same_directory_stops_instead_of_wiping_the_first(tmp_path):
    first, second = HostTier(tmp_path / "shm", budget=10 * MiB), HostTier(tmp_path / "shm", budget=10 * MiB)
    first.start()
    load(first, "a", model(tmp_path, "a", 1))
    with pytest.raises(HostTierBusy, match="in use by another gthreadd"):
        second.start()
    assert resident(first) == {"a"}, "the first daemon's segment survives"
    first.close()
    second.start()
    second.close()


def test_close_frees_everything(tier, tmp_path):
    load(tier, "a", model(tmp_path, "a", 2), pinned=True)
    tier.close()
    assert not resident(tier) and tier.used == 0


def test_choose_victims_is_lru_and_skips_pinned_and_leased():
    old = Segment("old", 3, {"o": False}, last_used=1)
    pinned = Segment("pinned", 3, {"p": True}, last_used=0)
    leased = Segment("leased", 3, {"l": False}, leases=1, last_used=0)
    new = Segment("new", 3, {"n": False}, last_used=5)
    segments = [new, pinned, leased, old]
    assert choose_victims(segments, used=12, need=3, budget=12) == [old]
    assert choose_victims(segments, used=12, need=6, budget=12) == [old, new]
    assert choose_victims(segments, used=12, need=7, budget=12) is None
    assert choose_victims(segments, used=6, need=6, budget=12) == []
