"""Every file oss_fast writes or reads back: atomic writes, bounded reads, one run per folder.

* write_atomic: the data goes to a new temporary file created exclusively next to the target, is
  flushed to disk and renamed over the target. A reader sees the old file or the new one, never
  half of one; a symlink planted at the target is replaced, never followed; the temporary file is
  removed on every failure path, Ctrl-C included, and stale ones a killed process left (our naming,
  a process that no longer exists) are removed by the next write to the same target.
* read_bounded: a regular file of at most `limit` bytes, or ValueError: a FIFO, a device
  (/dev/zero) or a link to one is refused before it is read, so a read never hangs or grows.
* folder_lock: a run holds its output folder; a second run on the same folder is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import stat

_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")


def _temporary_name(path: str) -> str:
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(path) -> None:
    """Temporary files of `path` left by processes that died mid-write (kill -9)."""
    folder, name = os.path.split(os.path.abspath(path))
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        match = _TMP.match(entry)
        if match and match["name"] == name and not _alive(int(match["pid"])):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, entry))


def write_atomic(path, data) -> None:
    """Writes `data` (bytes, str, or a function that writes to a binary file object) to `path`
    atomically (see the module's docstring). OSError/ValueError name the path."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {path}: its folder does not exist")
    if os.path.isdir(path) and not os.path.islink(path):
        raise ValueError(f"cannot write {path}: it is a folder")
    remove_stale_temporaries(path)
    tmp = _temporary_name(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def open_regular(path, what: str = "file", missing_ok: bool = False):
    """The regular file at path, opened for binary reading; ValueError naming the path for a FIFO,
    device, socket or folder (opened without waiting, O_NONBLOCK, then refused on fstat before any
    read) or what cannot be opened; None for a missing path when missing_ok."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    except FileNotFoundError as err:
        if missing_ok:
            return None
        raise ValueError(f"cannot read {what} {path} ({err.strerror})") from None
    except OSError as err:
        raise ValueError(f"cannot read {what} {path} ({err.strerror or type(err).__name__})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a FIFO, device or socket)"
        raise ValueError(f"cannot read {what} {path}: it is {kind}")
    return os.fdopen(fd, "rb")


def read_bounded(path, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most `limit` bytes; ValueError naming the path otherwise
    (missing, a folder, a FIFO or device, or too large)."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise ValueError(f"{what} {path} is {size} bytes, more than the {limit} a {what} may hold")
        data = f.read(limit + 1)  # never past the limit, should the file grow while it is read
        if len(data) > limit:
            raise ValueError(f"{what} {path} is more than the {limit} bytes a {what} may hold")
        return data


@contextlib.contextmanager
def folder_lock(folder, what: str = "--out"):
    """Holds an exclusive lock on a folder while a run writes into it; ValueError at once if
    another process holds it. The lock is the folder's own (flock on its descriptor): nothing is
    left behind, and a killed holder releases it."""
    fd = os.open(os.fspath(folder), os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise ValueError(f"{what} {folder} is in use by another oss-fast run: wait for it or pass "
                                 "another folder") from None
            raise
        yield
    finally:
        os.close(fd)
