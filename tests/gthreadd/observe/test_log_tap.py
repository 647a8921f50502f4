import os
import subprocess
import sys

from gthreadd.observe.log_tap import LogTap


def test_what_the_process_and_its_children_write_goes_on_and_is_read_line_by_line(tmp_path):
    """A descriptor standing in for stderr: a file, tapped; this process and a child that inherited
    the descriptor both write to it."""
    target = tmp_path / "stderr"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT)
    lines: list[str] = []
    tap = LogTap(lines.append, fds=(fd,))
    tap.start()
    os.write(fd, b"daemon line [model=a]\n")
    child = f"import os; os.write({fd}, b'(EngineCore pid=42) engine line\\n')"
    subprocess.run([sys.executable, "-c", child], pass_fds=(fd,), check=True)
    os.write(fd, b"a line in ")
    os.write(fd, b"two writes\n")
    tap.stop()
    os.close(fd)
    assert lines == ["daemon line [model=a]", "(EngineCore pid=42) engine line", "a line in two writes"]
    assert target.read_text() == "\n".join(lines) + "\n", "every byte went on to where the descriptor pointed"
