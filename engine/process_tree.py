"""Killing what an engine started: vLLM's EngineCore and its workers, a tree of processes."""

import contextlib

import psutil


def kill_tree(pid: int) -> list[psutil.Process]:
    """SIGKILL the process and everything it started; returns those it found (for a caller that
    reaps them). A process already gone is skipped."""
    try:
        root = psutil.Process(pid)
        tree = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return []
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    return tree
