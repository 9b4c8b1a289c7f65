"""Writing files and folders so that a reader (or a crash) never sees half of one."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

_UMASK = os.umask(0)
os.umask(_UMASK)

# Fault injection for the kill tests: SIGKILL this process at its Nth file operation (writers call
# `fault_point` before each write and rename), like the trainer's DREAMIR_KILL_AT_STEP.
FAULT_ENV = "DREAMIR_KILL_AT_FILE_OP"
_operations = 0


def fault_point() -> None:
    global _operations
    at = os.environ.get(FAULT_ENV)
    if at:
        _operations += 1
        if _operations == int(at):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)


def cache_dir() -> Path:
    """Folder for dreamir's own caches (de-quantised GGUF copies, embeddings)."""
    root = os.environ.get("DREAMIR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "dreamir"
    )
    return Path(root)


def file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _writer_alive(temp: Path) -> bool:
    """Whether the process that named `temp` (".NAME.PID-HEX.tmp") still runs; True when the name holds no pid."""
    pid = temp.name.rsplit(".", 2)[-2].split("-")[0] if temp.name.count(".") >= 3 else ""
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _temp_name(folder: Path, name: str, suffix: str) -> Path:
    """A fresh temp path beside `folder/name`, named before anything is created: whoever cleans up knows it even
    when a signal lands between its creation and the code that would have recorded it."""
    import secrets

    return folder / f".{name}.{os.getpid()}-{secrets.token_hex(4)}{suffix}"


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temp file beside `path`; on a clean exit it replaces `path` in one rename.

    On an error or an interrupt the temp file is removed and `path` keeps its old content.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    tmp = _temp_name(path.parent, path.name, ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk or a read-only folder: name the file being written, not the temp file
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike, content: str | bytes) -> Path:
    """Write `content` (text or bytes) to `path` atomically; returns the path."""
    with atomic_open(path, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)
    return Path(path)


def refuse_output_over_inputs(out: str | os.PathLike, *inputs: str | os.PathLike | None) -> None:
    """An output that is one of the command's inputs (or a link to one, or a folder holding one) would be
    replaced by what is computed from it: refuse before any work."""
    target = Path(out).resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source or target in source.parents:
            raise ValueError(f"the output {out} is (or holds) the input {given}: writing it would destroy the input")


class FolderRefused(FileExistsError):
    """The target folder exists and is not one this kind of writer made (it would be destroyed)."""


class FolderBusy(RuntimeError):
    """Another live process is writing the same run, export, index or report folder."""


@contextlib.contextmanager
def exclusive_lock(target: str | os.PathLike, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the folder or file `target` for the block, or fail at once naming the process
    that holds it.

    An OS file lock (flock) on a lock file under `cache_dir()/locks`, named by the target's absolute path (so
    nothing is added beside the user's outputs): released on any exit of its holder, a SIGKILL included, so a
    dead process never leaves a stale lock behind. Two `dreamir train` into one run folder, or two exports to
    one folder, would otherwise interleave their writes."""
    import fcntl
    import hashlib

    name = hashlib.sha256(str(Path(target).resolve()).encode()).hexdigest()[:32]
    path = cache_dir() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115  (held open for the lock's life)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise FolderBusy(f"{what} is in use by {holder}; wait for it to finish") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock


def _follow_umask(folder: Path) -> None:
    """mkdtemp makes 0700 folders (and some writers 0600 files): give what we built the modes the user's umask
    asks for, as a plain mkdir/open would."""
    os.chmod(folder, 0o777 & ~_UMASK)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~_UMASK)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~_UMASK)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike, marker: str, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Build a folder in a fresh temp folder beside `target`, then swap it in whole.

    `marker` is a file name the writer puts in every folder it makes; an existing `target` is replaced
    only when it holds that marker (a previous folder of the same kind) or is empty: anything else
    (a run folder, a home directory, `..`) is refused before any work. A reader sees the old folder or
    the new one, never a mix; on an error the old folder stays and the temp folder is removed.
    Entries named in `keep` (e.g. a sharded build's parts) move from the old folder into the new one.
    """
    target = Path(target)
    check_replaceable(target, marker, keep)  # refused before anything is created
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(target, str(target)), _swapped_in(target, marker, keep) as tmp:
        yield tmp


@contextlib.contextmanager
def _swapped_in(target: Path, marker: str, keep: tuple[str, ...]) -> Iterator[Path]:
    recover_interrupted_swap(target, marker)
    check_replaceable(target, marker, keep)
    remove_stale_temps(target.parent, target.name)
    tmp = _temp_name(target.parent, target.name, ".tmp")
    old = _temp_name(target.parent, target.name, ".old")
    moved: list[str] = []  # entries of `keep` moved from the old folder into the new one
    try:
        os.mkdir(tmp)
        yield tmp
        if not (tmp / marker).exists():
            raise RuntimeError(f"internal error: {tmp} was written without its marker {marker}")
        _follow_umask(tmp)
        check_replaceable(target, marker, keep)  # still true after the (possibly long) build
        for name in keep:
            if (target / name).exists() and not (tmp / name).exists():
                fault_point()
                os.rename(target / name, tmp / name)
                moved.append(name)
        with _signals_held():  # the swap and its clean-up run to their end; a Ctrl-C or SIGTERM comes right after
            if target.exists():
                os.mkdir(old)
                fault_point()
                os.rename(target, old / "folder")
            fault_point()
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as err:
        # Put the old folder back if it was moved aside and the new one did not take its place (an error or an
        # interrupt between the two renames); then the temp folder goes. A reader sees the old folder whole.
        if (old / "folder").exists() and not target.exists():
            os.rename(old / "folder", target)
        for name in moved:
            if (tmp / name).exists() and target.exists() and not (target / name).exists():
                os.rename(tmp / name, target / name)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        if isinstance(err, OSError):  # a full disk or a read-only folder: name the folder, not the temp one
            inside = f" (writing {Path(err.filename).name})" if err.filename and str(tmp) in str(err.filename) else ""
            raise OSError(err.errno, f"{err.strerror or err}{inside}", str(target)) from err
        raise


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM held back by the OS until the block ends, then delivered (so handled as usual): an
    interrupt between a swap's renames, or during its clean-up, would leave the old folder beside the new one."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def recover_interrupted_swap(target: str | os.PathLike, marker: str) -> None:
    """After a crash between the two renames of `atomic_folder`, `target` is missing: put the finished
    new folder in its place (a temp folder holding the marker), else the old one. Readers call this."""
    target = Path(target)
    if target.exists() or not target.parent.is_dir():
        return
    finished = sorted(target.parent.glob(f".{target.name}.*.tmp"), key=lambda p: p.stat().st_mtime)
    finished = [p for p in finished if (p / marker).exists()]
    old = [p / "folder" for p in target.parent.glob(f".{target.name}.*.old") if (p / "folder" / marker).exists()]
    for candidate in finished[-1:] or old[-1:]:
        os.rename(candidate, target)


def check_replaceable(target: Path, marker: str, keep: tuple[str, ...] = ()) -> None:
    if target.is_symlink() and not target.exists():
        raise FolderRefused(
            f"{target} is a symbolic link to {os.readlink(target)}, which does not exist; remove the link or "
            "choose another output path"
        )
    if not target.exists():
        return
    if not target.is_dir():
        raise FolderRefused(f"{target} exists and is not a folder; choose another output path")
    if (target / marker).exists() or all(entry.name in keep for entry in target.iterdir()):
        return
    raise FolderRefused(
        f"{target} exists and was not written by this command (no {marker} in it); refusing to replace it — "
        "choose a new or empty folder, or remove it yourself"
    )


def remove_stale_temps(folder: str | os.PathLike, name: str, older_than_s: float = 3600.0) -> int:
    """Remove temp files/folders this module left beside `folder/name` after a crash: at once when the process
    named in the temp's name is gone, otherwise once older than `older_than_s` (a concurrent writer's live temp
    is kept). Returns how many were removed."""
    import time

    removed = 0
    for path in Path(folder).glob(f".{name}.*"):
        if path.suffix not in (".tmp", ".old"):
            continue
        if _writer_alive(path) and time.time() - path.stat().st_mtime < older_than_s:
            continue
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed += 1
    return removed
