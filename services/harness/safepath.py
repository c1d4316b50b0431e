"""Host-side file operations on directory trees a sandboxed agent can write (issue 20 §2).

An agent controls every name under its group folder and its session directory, at any moment, also while the host
works there: it can swap a directory for a symbolic link to a host path, a file for a FIFO, or leave a hardlink to
a file. A path string checked first and used later (``realpath``, ``is_dir()``, ``mkdir(exist_ok=True)``,
``chown(path)``) is resolved again at use time, through whatever is there by then. So every operation here:

- starts from a directory descriptor the host trusts (:meth:`SafeDir.open_root`, e.g. ``<data>/groups``: the
  host's own directory, never a path the agent can write) and resolves each component beneath it without
  following symbolic links: one ``openat2(2)`` with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
  RESOLVE_NO_MAGICLINKS`` where the kernel has it (Linux ≥ 5.6; ``ENOSYS``/``EPERM``, e.g. under a seccomp
  filter, mean it has not), else one ``openat(2)`` per component with ``O_NOFOLLOW`` (and ``O_DIRECTORY`` for
  every directory);
- takes only plain names: no empty component, ``.``, ``..``, absolute path, NUL or other control character;
- checks what it opened with ``fstat(2)`` on the descriptor: a directory where one is expected, a regular file
  where a file is; symbolic links, FIFOs, sockets and devices are refused (files are opened ``O_NONBLOCK``, so a
  FIFO cannot block the open: open(2), "O_NONBLOCK");
- changes owner only through the opened descriptor (``fchown(2)``);
- writes a file by creating a new one (``O_CREAT | O_EXCL | O_NOFOLLOW``) and renaming it over the name
  (``renameat(2)``): a link planted at the name is replaced, never written through;
- caps reads (bytes): a huge sparse file is refused from its size, without being read.

Every refusal raises :class:`UnsafePath`, naming the path, the offending component and what was found there.
Linux only (``dir_fd`` support in :mod:`os`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import secrets
import stat
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Callable

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
"""openat2(2) ``resolve`` flags (linux/openat2.h)."""

MAX_DEPTH = 64
"""Deepest tree :meth:`SafeDir.remove` descends (levels); an agent's deeper tree is refused, not recursed into."""

_SYS_OPENAT2 = 437  # one number on every architecture below: openat2 came after the syscall table unification
_OPENAT2_ARCHES = {"x86_64", "aarch64", "arm64", "armv7l", "riscv64", "ppc64le", "s390x", "i686", "i386"}
_CONTROL = {chr(c) for c in range(32)} | {"\x7f"}
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY
_KINDS = {stat.S_IFLNK: "a symbolic link", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device", stat.S_IFREG: "a regular file",
          stat.S_IFDIR: "a directory"}


class UnsafePath(Exception):
    """A host path operation was refused: ``component`` of ``path`` is ``found`` (``"a symbolic link"``,
    ``"a FIFO"``, ``".."``…) where ``expected`` (``"a directory"``, ``"a regular file"``, ``"a plain name"``)
    was required. Nothing was created, written or chowned through it."""

    def __init__(self, path: str, component: str, found: str, expected: str) -> None:
        self.path, self.component, self.found, self.expected = path, component, found, expected
        super().__init__(f"unsafe host path {path}: {component!r} is {found}, expected {expected}")


class FileTooLarge(ValueError):
    """A read found more than its cap; ``size`` and ``max_bytes`` are in bytes."""

    def __init__(self, path: str, size: int, max_bytes: int) -> None:
        self.path, self.size, self.max_bytes = path, size, max_bytes
        super().__init__(f"{path} holds {size} bytes, more than the {max_bytes} allowed")


def kind_of(mode: int) -> str:
    """``"a symbolic link"``, ``"a FIFO"``, ``"a directory"``… for an ``st_mode``."""
    return _KINDS.get(stat.S_IFMT(mode), "an unknown file type")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_openat2() -> Callable[[int, str, int, int, int], int] | None:
    """``openat2(dir_fd, path, flags, mode, resolve) -> fd`` through ``syscall(2)``, or None where it cannot exist
    (not Linux, an unknown syscall number). Raises OSError with the kernel's errno."""
    if platform.system() != "Linux" or platform.machine() not in _OPENAT2_ARCHES:
        return None
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_OpenHow), ctypes.c_size_t]

    def openat2(dir_fd: int, path: str, flags: int, mode: int, resolve: int) -> int:
        how = _OpenHow(flags, mode if flags & os.O_CREAT else 0, resolve)
        while True:
            fd = syscall(_SYS_OPENAT2, dir_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
            if fd >= 0:
                return fd
            err = ctypes.get_errno()
            # EINTR: a signal; EAGAIN: a concurrent rename during a RESOLVE_BENEATH walk (openat2(2)): retry both.
            if err not in (errno.EINTR, errno.EAGAIN):
                raise OSError(err, os.strerror(err), path)
    return openat2


openat2: Callable[[int, str, int, int, int], int] | None = _load_openat2()
"""The ``openat2`` wrapper, or None: then (and after it fails with ENOSYS/EPERM once) every open walks the path
one ``openat`` per component. Tests set it to None to exercise the walk."""


def _parts(rel: str | os.PathLike[str], display: str) -> list[str]:
    text = os.fspath(rel)
    if text.startswith("/"):
        raise UnsafePath(f"{display}/{text}", text, "an absolute path", "a relative path")
    parts = text.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePath(f"{display}/{text}", part, repr(part) if part else "an empty name", "a plain name")
        if _CONTROL & set(part):
            raise UnsafePath(f"{display}/{text}", part, "a name with a NUL or control character", "a plain name")
    return parts


def _open(dir_fd: int, parts: list[str], flags: int, mode: int, display: str, expected: str) -> int:
    """Open ``parts`` beneath ``dir_fd`` following no symbolic link; a link or a non-directory on the way is an
    :class:`UnsafePath` naming it."""
    global openat2
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC
    if openat2 is not None:
        try:
            return openat2(dir_fd, "/".join(parts), flags, mode,
                           RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)
        except OSError as exc:
            if exc.errno in (errno.ENOSYS, errno.EPERM):  # not in this kernel, or filtered: walk from now on
                openat2 = None
            elif exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV):
                raise _refusal(dir_fd, parts, display, expected, exc) from None
            else:
                raise
    opened: list[int] = []
    try:
        fd = dir_fd
        for name in parts[:-1]:
            fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            opened.append(fd)
        return os.open(parts[-1], flags, mode, dir_fd=fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _refusal(dir_fd, parts, display, expected, exc) from None
        raise
    finally:
        for fd in opened:
            os.close(fd)


def _refusal(dir_fd: int, parts: list[str], display: str, expected: str, exc: OSError) -> UnsafePath:
    """Name the first component that is not a directory (the last: not ``expected``). Looked up after the fact,
    for the message only: the refusal itself came from the kernel."""
    path = f"{display}/{'/'.join(parts)}"
    for i, name in enumerate(parts):
        try:
            st = os.stat("/".join(parts[:i + 1]), dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            break
        last = i == len(parts) - 1
        if not stat.S_ISDIR(st.st_mode) or last:
            return UnsafePath(path, name, kind_of(st.st_mode), "a directory" if not last else expected)
    return UnsafePath(path, parts[-1], f"unusable ({os.strerror(exc.errno or 0)})", expected)


class SafeDir:
    """An open directory; every path given to its methods is relative and resolved beneath it (see the module
    docstring). A context manager: leaving it closes the descriptor. ``path`` is for messages only."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd, self.path = fd, path

    @classmethod
    def open_root(cls, path: str | os.PathLike[str], *, create: bool = False) -> "SafeDir":
        """Open a directory the host owns (followed as configured: it is the operator's, not the agent's).
        ``create``: make it and its parents first. Raises OSError (e.g. FileNotFoundError, NotADirectoryError)."""
        if create:
            Path(path).mkdir(parents=True, exist_ok=True)
        return cls(os.open(path, _DIR_FLAGS | os.O_CLOEXEC), os.fspath(path))

    def __enter__(self) -> "SafeDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def subdir(self, rel: str | os.PathLike[str], *, create: bool = False, mode: int = 0o755) -> "SafeDir":
        """The directory ``rel`` beneath this one. ``create``: make missing components (``mode`` before the umask),
        like ``mkdir -p`` but one component at a time, each opened without following links.

        Raises:
            UnsafePath: a component is a symbolic link, FIFO, socket, device or file, or ``rel`` is not plain names.
            FileNotFoundError: a component is missing and ``create`` is false.
        """
        parts = _parts(rel, self.path)
        display = f"{self.path}/{os.fspath(rel)}"
        if not create:
            return SafeDir(_open(self.fd, parts, _DIR_FLAGS, 0, self.path, "a directory"), display)
        fd = os.dup(self.fd)
        try:
            for i, name in enumerate(parts):
                here = f"{self.path}/{'/'.join(parts[:i])}".rstrip("/")
                try:
                    os.mkdir(name, mode, dir_fd=fd)
                except FileExistsError:  # already there (or raced in): whatever it is, the open below checks it
                    pass
                nxt = _open(fd, [name], _DIR_FLAGS, 0, here, "a directory")
                os.close(fd)
                fd = nxt
        except BaseException:
            os.close(fd)
            raise
        return SafeDir(fd, display)

    def kind(self, rel: str | os.PathLike[str]) -> str | None:
        """What ``rel`` is (``"a directory"``, ``"a symbolic link"``…, see :func:`kind_of`), not following a final
        link; None when it does not exist. Raises UnsafePath when a parent component is not a real directory."""
        parts = _parts(rel, self.path)
        with self._parent(parts) as parent:
            try:
                return kind_of(os.stat(parts[-1], dir_fd=parent.fd, follow_symlinks=False).st_mode)
            except FileNotFoundError:
                return None

    def _parent(self, parts: list[str]) -> AbstractContextManager["SafeDir"]:
        """The directory holding the last of ``parts``: opened beneath this one, or this one (kept open)."""
        return self.subdir("/".join(parts[:-1])) if len(parts) > 1 else nullcontext(self)

    def chown(self, uid: int, gid: int) -> None:
        """``fchown`` this directory (the descriptor: never a path that could have been swapped)."""
        os.fchown(self.fd, uid, gid)

    def read_bytes(self, rel: str | os.PathLike[str], *, max_bytes: int) -> bytes:
        """The content of the regular file ``rel``, at most ``max_bytes`` bytes.

        Raises:
            UnsafePath: ``rel`` (or a parent) is a link, FIFO, socket, device or directory.
            FileTooLarge: the file holds more than ``max_bytes`` (judged from its size first: a sparse file of
                terabytes is refused without reading).
            FileNotFoundError: missing.
        """
        parts = _parts(rel, self.path)
        display = f"{self.path}/{os.fspath(rel)}"
        fd = _open(self.fd, parts, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY, 0, self.path, "a regular file")
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(display, parts[-1], kind_of(st.st_mode), "a regular file")
            if st.st_size > max_bytes:
                raise FileTooLarge(display, st.st_size, max_bytes)
            chunks, total = [], 0
            while total <= max_bytes and (chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total))):
                chunks.append(chunk)
                total += len(chunk)
            if total > max_bytes:  # it grew after the fstat
                raise FileTooLarge(display, total, max_bytes)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def write_bytes(self, rel: str | os.PathLike[str], data: bytes, *, mode: int = 0o644,
                    owner: tuple[int, int] | None = None) -> None:
        """Replace ``rel`` with a new regular file holding ``data``: created under a fresh name with ``O_EXCL``,
        given ``mode`` and ``owner`` (uid, gid) on its descriptor, then renamed over ``rel``. Whatever was at
        ``rel`` (a symlink, a hardlink to a host file) is replaced, not written through. The parent must exist.

        Raises:
            UnsafePath: a parent component is not a real directory, or ``rel`` is a directory.
        """
        parts = _parts(rel, self.path)
        with self._parent(parts) as parent:
            tmp = f".{secrets.token_hex(8)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=parent.fd)
            try:
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fchmod(fd, mode)
                    if owner is not None:
                        os.fchown(fd, *owner)
                finally:
                    os.close(fd)
                os.rename(tmp, parts[-1], src_dir_fd=parent.fd, dst_dir_fd=parent.fd)
            except BaseException as exc:
                os.unlink(tmp, dir_fd=parent.fd)
                if isinstance(exc, OSError) and exc.errno in (errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST):
                    raise UnsafePath(f"{self.path}/{os.fspath(rel)}", parts[-1], "a directory",
                                     "a regular file") from None
                raise

    def symlink(self, rel: str | os.PathLike[str], target: str) -> None:
        """Create the symbolic link ``rel`` → ``target`` (``symlinkat(2)``; the host never follows it itself).
        The parent must exist. Raises UnsafePath for an unsafe parent, FileExistsError when ``rel`` exists."""
        parts = _parts(rel, self.path)
        with self._parent(parts) as parent:
            os.symlink(target, parts[-1], dir_fd=parent.fd)

    def remove(self, rel: str | os.PathLike[str]) -> None:
        """Delete ``rel`` if it exists: a directory with everything below it (each level opened without following
        links, entries unlinked by name), anything else unlinked (a link goes, its target stays).

        Raises:
            UnsafePath: a parent component is not a real directory, or the tree is deeper than :data:`MAX_DEPTH`.
        """
        parts = _parts(rel, self.path)
        with self._parent(parts) as parent:
            _remove_entry(parent.fd, parts[-1], f"{self.path}/{os.fspath(rel)}", 0)


def _remove_entry(dir_fd: int, name: str, display: str, depth: int) -> None:
    try:
        is_dir = stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return
    if not is_dir:
        os.unlink(name, dir_fd=dir_fd)
        return
    if depth >= MAX_DEPTH:
        raise UnsafePath(display, name, f"a tree deeper than {MAX_DEPTH} levels", "a shallower tree")
    try:
        fd = _open(dir_fd, [name], _DIR_FLAGS | os.O_NONBLOCK, 0, display, "a directory")
    except UnsafePath:  # swapped for a link or file since the stat: unlinking the name is all that is left to do
        os.unlink(name, dir_fd=dir_fd)
        return
    try:
        with os.scandir(fd) as entries:
            names = [entry.name for entry in entries]
        for child in names:
            _remove_entry(fd, child, f"{display}/{child}", depth + 1)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)
