"""The memory limit of the daemon's own cgroup, read from a fake /proc/self/cgroup and cgroup
mount laid out in tmp_path as the kernel lays them out."""

from pathlib import Path

from memory.host_limit import UNLIMITED, cgroup_limit, memory_limit, physical_memory


def layout(tmp_path: Path, proc: str, files: dict[str, str]) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cgroup").write_text(proc)
    root = tmp_path / "fs"
    for name, value in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(value + "\n")
    return tmp_path / "cgroup", root


def test_v1_takes_the_smallest_limit_on_the_path_its_ancestors_included(tmp_path):
    proc, root = layout(tmp_path, "12:pids:/x\n4:memory:/pod/ctr\n3:cpuset:/\n", {
        "memory/memory.limit_in_bytes": str(UNLIMITED * 2 - 4096),
        "memory/pod/memory.limit_in_bytes": str(6 << 30),
        "memory/pod/ctr/memory.limit_in_bytes": str(8 << 30),
    })
    assert cgroup_limit(proc, root) == 6 << 30, "the pod's limit binds the container beneath it"


def test_v2_reads_memory_max_and_max_means_none(tmp_path):
    proc, root = layout(tmp_path, "0::/system.slice/gthreadd.service\n", {
        "system.slice/memory.max": "max",
        "system.slice/gthreadd.service/memory.max": str(7 << 30),
    })
    assert cgroup_limit(proc, root) == 7 << 30
    proc, root = layout(tmp_path / "b", "0::/\n", {"memory.max": "max"})
    assert cgroup_limit(proc, root) is None


def test_a_combined_v1_controller_line_and_unreadable_files(tmp_path):
    proc, root = layout(tmp_path, "5:cpuacct,memory:/a\n", {"memory/a/memory.limit_in_bytes": "1073741824"})
    assert cgroup_limit(proc, root) == 1 << 30
    assert cgroup_limit(tmp_path / "missing", root) is None
    proc, root = layout(tmp_path / "c", "5:cpu:/a\n", {})
    assert cgroup_limit(proc, root) is None, "no memory controller: no limit"


def test_this_process_limit_is_never_above_the_ram():
    assert 0 < memory_limit() <= physical_memory()
