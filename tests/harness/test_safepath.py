"""services/harness/safepath.py: host-side file operations beneath a trusted directory, following no link and
accepting nothing but directories and regular files where those are expected. Every behaviour is checked with
both resolvers: openat2(2) (this kernel's) and the per-component openat(2) walk."""

from __future__ import annotations

import errno
import os
import socket
import stat
from pathlib import Path

import pytest

from services.harness import safepath
from services.harness.safepath import FileTooLarge, SafeDir, UnsafePath
from tests.hostpaths import decoy, snapshot


@pytest.fixture(params=["openat2", "walk"])
def resolver(request, monkeypatch) -> str:
    if request.param == "walk":
        monkeypatch.setattr(safepath, "openat2", None)
    else:
        assert safepath.openat2 is not None, "this platform has no openat2 wrapper (x86_64/aarch64 Linux expected)"
    return request.param


@pytest.fixture
def tree(tmp_path: Path, resolver: str):
    """A trusted root ``tmp_path/root`` (open as a SafeDir), a host directory outside it, and the snapshot of
    that host directory."""
    host = decoy(tmp_path / "host")
    (tmp_path / "root").mkdir()
    with SafeDir.open_root(tmp_path / "root") as root:
        yield root, tmp_path / "root", host, snapshot(host)


def test_subdir_creates_missing_components_and_is_idempotent(tree) -> None:
    root, path, _, _ = tree
    with root.subdir("a/b/c", create=True, mode=0o750) as c:
        assert os.path.samestat(os.fstat(c.fd), os.stat(path / "a" / "b" / "c"))
    assert stat.S_IMODE((path / "a" / "b").stat().st_mode) == 0o750 & ~_umask()
    with root.subdir("a/b/c", create=True), root.subdir("a/b") as b:
        assert b.kind("c") == "a directory" and b.kind("missing") is None


@pytest.mark.parametrize("rel", ["link", "link/inner", "real/link"])
def test_a_symlink_anywhere_on_the_path_is_refused_and_nothing_is_created_through_it(tree, rel: str) -> None:
    root, path, host, before = tree
    (path / "real").mkdir()
    (path / "link").symlink_to(host, target_is_directory=True)
    (path / "real" / "link").symlink_to(host, target_is_directory=True)
    with pytest.raises(UnsafePath, match="'link' is a symbolic link, expected a directory") as caught:
        root.subdir(f"{rel}/new", create=True)
    assert caught.value.component == "link" and caught.value.found == "a symbolic link"
    with pytest.raises(UnsafePath, match="symbolic link"):
        root.write_bytes(f"{rel}/file", b"x")
    with pytest.raises(UnsafePath, match="symbolic link"):
        root.read_bytes(f"{rel}/host-secret.txt" if rel == "link" else f"{rel}/x", max_bytes=100)
    assert snapshot(host) == before


def plant(kind: str, at: Path) -> None:
    if kind == "a FIFO":
        os.mkfifo(at)
    elif kind == "a socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(at))
        s.close()
    else:
        at.write_text("not a directory")


@pytest.mark.parametrize("kind", ["a FIFO", "a socket", "a regular file"])
def test_a_fifo_socket_or_file_where_a_directory_is_expected_is_refused(tree, kind: str) -> None:
    root, path, _, _ = tree
    plant(kind, path / "logs")
    with pytest.raises(UnsafePath, match=f"'logs' is {kind}, expected a directory"):
        root.subdir("logs", create=True)
    with pytest.raises(UnsafePath, match=f"'logs' is {kind}, expected a directory"):
        root.subdir("logs/inner", create=True)


def test_a_fifo_where_a_file_is_expected_is_refused_without_blocking(tree) -> None:
    root, path, _, _ = tree
    os.mkfifo(path / "reply.txt")  # an open(O_RDONLY) without O_NONBLOCK would wait here for a writer forever
    with pytest.raises(UnsafePath, match="'reply.txt' is a FIFO, expected a regular file"):
        root.read_bytes("reply.txt", max_bytes=100)
    (path / "dir").mkdir()
    with pytest.raises(UnsafePath, match="'dir' is a directory, expected a regular file"):
        root.read_bytes("dir", max_bytes=100)


@pytest.mark.parametrize("rel, found", [("/etc", "an absolute path"), ("../x", "'..'"), ("a/../b", "'..'"),
                                        ("./a", "'.'"), ("a//b", "an empty name"), ("", "an empty name"),
                                        ("a\0b", "a NUL or control character"),
                                        ("new\nline", "a NUL or control character"),
                                        ("esc\x1b[31m", "a NUL or control character")])
def test_anything_but_plain_relative_names_is_refused_before_touching_the_disk(tree, rel: str, found: str) -> None:
    root, path, _, _ = tree
    with pytest.raises(UnsafePath, match=found.replace(".", r"\.")):
        root.subdir(rel, create=True)
    assert list(path.iterdir()) == []


def test_writing_replaces_a_planted_symlink_or_hardlink_instead_of_writing_through_it(tree) -> None:
    root, path, host, before = tree
    (path / "via-symlink").symlink_to(host / "host-secret.txt")
    os.link(host / "host-secret.txt", path / "via-hardlink")  # same filesystem: the agent's tree and the host file
    root.write_bytes("via-symlink", b"runner data", mode=0o640, owner=(1234, 2345))
    root.write_bytes("via-hardlink", b"runner data", mode=0o640, owner=(1234, 2345))
    for name in ("via-symlink", "via-hardlink"):
        st = (path / name).lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and (path / name).read_bytes() == b"runner data"
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1234, 2345)
    assert [p.name for p in path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    # The host file kept its content; only its link count went back to 1 when our rename replaced the hardlink.
    assert snapshot(host) == before and (host / "host-secret.txt").stat().st_nlink == 1


def test_writing_over_a_directory_is_refused(tree) -> None:
    root, path, _, _ = tree
    (path / "out").mkdir()
    with pytest.raises(UnsafePath, match="'out' is a directory, expected a regular file"):
        root.write_bytes("out", b"x")
    assert [p.name for p in path.iterdir()] == ["out"]


def test_reads_are_capped_and_a_huge_sparse_file_is_refused_from_its_size(tree) -> None:
    root, path, _, _ = tree
    with open(path / "huge", "wb") as f:
        f.truncate(1 << 40)  # 1 TiB, sparse: reading it would take hours
    with pytest.raises(FileTooLarge, match=f"holds {1 << 40} bytes, more than the 1000 allowed"):
        root.read_bytes("huge", max_bytes=1000)
    (path / "note.txt").write_bytes(b"x" * 1000)
    assert root.read_bytes("note.txt", max_bytes=1000) == b"x" * 1000
    with pytest.raises(FileTooLarge):
        root.read_bytes("note.txt", max_bytes=999)


def test_remove_deletes_a_hostile_tree_but_never_what_its_links_point_to(tree) -> None:
    root, path, host, before = tree
    junk = path / "junk"
    (junk / "deeper").mkdir(parents=True)
    (junk / "to-host").symlink_to(host, target_is_directory=True)
    (junk / "deeper" / "to-file").symlink_to(host / "host-secret.txt")
    os.mkfifo(junk / "pipe")
    (junk / "new\nline\x01").write_text("odd name")
    os.link(host / "host-secret.txt", junk / "hard")
    root.remove("junk")
    root.remove("junk")  # already gone: nothing to do
    assert list(path.iterdir()) == [] and snapshot(host) == before
    (path / "link").symlink_to(host, target_is_directory=True)
    root.remove("link")  # a link is unlinked, not descended
    assert snapshot(host) == before


def test_remove_refuses_a_tree_deeper_than_the_cap(tree) -> None:
    root, path, _, _ = tree
    deep = path / "d"
    deep.mkdir()
    with SafeDir.open_root(deep) as d:
        d.subdir("/".join(["x"] * (safepath.MAX_DEPTH + 1)), create=True).close()
    with pytest.raises(UnsafePath, match="deeper than 64 levels"):
        root.remove("d")


def test_chown_acts_on_the_opened_directory_even_after_its_name_is_swapped_for_a_link(tree) -> None:
    root, path, host, before = tree
    with root.subdir("logs", create=True) as logs:
        (path / "logs").rename(path / "moved")
        (path / "logs").symlink_to(host, target_is_directory=True)
        logs.chown(1234, 2345)  # the descriptor is the directory we opened, wherever its name went
    assert ((path / "moved").stat().st_uid, (path / "moved").stat().st_gid) == (1234, 2345)
    assert snapshot(host) == before


def test_an_openat2_that_the_kernel_or_seccomp_refuses_falls_back_to_the_walk(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def filtered(*args: object) -> int:
        calls.append(args)
        raise OSError(errno.ENOSYS, "Function not implemented")
    monkeypatch.setattr(safepath, "openat2", filtered)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "link").symlink_to(tmp_path)
    with SafeDir.open_root(tmp_path) as root:
        root.subdir("a").close()  # opened by the walk
        assert safepath.openat2 is None and len(calls) == 1  # not tried again
        with pytest.raises(UnsafePath, match="'link' is a symbolic link"):
            root.subdir("a/link")


def test_this_kernel_resolves_with_openat2_when_it_has_it(tmp_path: Path) -> None:
    # Where the kernel has openat2 (Linux >= 5.6, not filtered), the module keeps using it; where it has not, the
    # first call turns the walk on. Either way the answer is the same directory.
    wrapper = safepath._load_openat2()
    assert wrapper is not None
    try:
        os.close(wrapper(-100, str(tmp_path), os.O_RDONLY | os.O_DIRECTORY, 0, 0))  # AT_FDCWD
        kernel_has_it = True
    except OSError as exc:
        assert exc.errno in (errno.ENOSYS, errno.EPERM), exc
        kernel_has_it = False
    (tmp_path / "a").mkdir()
    with SafeDir.open_root(tmp_path) as root, root.subdir("a") as a:
        assert os.path.samestat(os.fstat(a.fd), (tmp_path / "a").stat())
    assert (safepath.openat2 is not None) == kernel_has_it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
