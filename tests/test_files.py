"""Every output is written atomically and never through a link; reads are bounded (oss_fast/files.py)."""

import os
import subprocess
import sys

import pytest

from oss_fast import Schedule
from oss_fast.files import folder_lock, read_bounded, write_atomic


def test_a_planted_symlink_is_replaced_not_followed(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    link = tmp_path / "out.json"
    link.symlink_to(target)
    write_atomic(link, "new")
    assert target.read_text() == "keep me"
    assert not link.is_symlink() and link.read_text() == "new"


def test_a_dangling_symlink_creates_nothing_where_it_points(tmp_path):
    elsewhere = tmp_path / "elsewhere.txt"
    link = tmp_path / "out.json"
    link.symlink_to(elsewhere)
    write_atomic(link, b"x")
    assert not elsewhere.exists() and link.read_bytes() == b"x"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "state.pt"
    path.write_text("old")

    def fail(f):
        f.write(b"half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(path, fail)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["state.pt"]


def test_stale_temporaries_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".out.json.{dead}.0123abcd.tmp"
    stale.write_text("left by kill -9")
    live = tmp_path / f".out.json.{os.getpid()}.0123abcd.tmp"  # a write in progress: kept
    live.write_text("")
    other = tmp_path / f".other.json.{dead}.0123abcd.tmp"  # another target's: not ours to judge
    other.write_text("")
    write_atomic(tmp_path / "out.json", "{}")
    assert not stale.exists() and live.exists() and other.exists()


def test_schedule_save_goes_through_the_atomic_writer(tmp_path):
    target = tmp_path / "victim"
    target.write_text("keep me")
    (tmp_path / "s.json").symlink_to(target)
    Schedule([0.5, 0.0]).save(tmp_path / "s.json")
    assert target.read_text() == "keep me" and Schedule.load(tmp_path / "s.json").sigmas == [0.5, 0.0]


@pytest.mark.parametrize("kind", ["fifo", "device", "link to a device", "folder"])
def test_reads_refuse_what_is_not_a_regular_file_before_reading(tmp_path, kind):
    path = tmp_path / "s.json"
    if kind == "fifo":
        os.mkfifo(path)  # open() would wait for a writer forever
    elif kind == "device":
        path = "/dev/zero"  # read() would never end
    elif kind == "link to a device":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    with pytest.raises(ValueError, match="not a regular file|a folder"):
        Schedule.load(path)


def test_reads_refuse_a_file_over_the_limit(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b" " * 101)
    assert read_bounded(path, 101) == b" " * 101
    with pytest.raises(ValueError, match="101 bytes, more than the 100"):
        read_bounded(path, 100)


def test_a_locked_folder_refuses_a_second_run(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY);"
                               " fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                               str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ValueError, match="in use by another oss-fast run"):
            with folder_lock(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with folder_lock(tmp_path):  # released when its holder died
        pass
    assert os.listdir(tmp_path) == []


def test_ctrl_c_just_after_the_rename_stays_a_ctrl_c(tmp_path, monkeypatch):
    real_replace = os.replace

    def replace_then_interrupt(src, dst):
        real_replace(src, dst)
        raise KeyboardInterrupt  # the temporary is gone: removing it must not turn this into an OSError

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(tmp_path / "c.ckpt", b"state")
    assert (tmp_path / "c.ckpt").read_bytes() == b"state"
