"""The sandbox's isolation against the real kernel: Landlock, uid leases, cleanup, resource limits.

What: ``autograder/harness/confine.py`` and ``landlock.py`` (applied in the call process),
``autograder/judge/isolation.py`` and ``uids.py`` (used by the judge). Why real processes and no
mocks: these are security boundaries, so every test forks, drops privileges or confines itself and
lets the kernel answer. A test whose precondition is missing (root, Landlock, Linux) skips with a
reason that starts with "environment: ".
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pwd
import select
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from autograder.harness import confine, landlock
from autograder.judge import isolation, uids
from tests.support import ROOT

LINUX = sys.platform.startswith("linux")
ABI = landlock.landlock_abi()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0

needs_landlock = pytest.mark.skipif(ABI < 1, reason="environment: no Landlock in this kernel")
needs_root = pytest.mark.skipif(not (LINUX and IS_ROOT), reason="environment: needs root on Linux")


# -- helpers ---------------------------------------------------------------------------------------


def in_child(fn: Callable[[], object], timeout: float = 30.0) -> object:
    """Run ``fn`` in a forked child; return what it returned (JSON), or fail with its exception."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            try:
                message = {"value": fn()}
            except BaseException as exc:  # noqa: BLE001 - reported to the parent
                message = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(write_end, json.dumps(message).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    data, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))[0]:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(read_end)
        _end(pid)
    assert data, "the child process sent nothing (crashed or timed out)"
    message = json.loads(data)
    assert "error" not in message, message.get("error")
    return message["value"]


def _end(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def become(uid: int) -> None:
    """In a forked child: drop to ``uid`` (gid of the same number, no groups)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def start_as(uid: int, fn: Callable[[], None]) -> int:
    """Fork a child that becomes ``uid``, runs ``fn`` and exits; its pid."""
    pid = os.fork()
    if pid == 0:
        try:
            become(uid)
            fn()
        finally:
            os._exit(0)
    return pid


def attempt(action: Callable[[], object]) -> str:
    """Run ``action``: "ok", or the class name of the OSError it raised."""
    try:
        action()
        return "ok"
    except OSError as exc:
        return type(exc).__name__


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def lease():
    """A uid leased from the machine's own lock folder, so that no real grading running meanwhile uses it."""
    if not (LINUX and IS_ROOT):
        pytest.skip("environment: a private uid needs root on Linux")
    held = uids.lease_uid()
    yield held
    uids.kill_uid_processes(held.uid)
    uids.remove_files_of(held.uid)
    held.release()


@pytest.fixture
def shared_dir():
    """A folder under /tmp that any uid can traverse (tmp_path's ancestors are private)."""
    base = Path("/tmp")
    if not base.is_dir() or not all(os.stat(p).st_mode & stat.S_IXOTH for p in (base, *base.parents)):
        pytest.skip("environment: no /tmp that every user can traverse")
    path = Path(tempfile.mkdtemp(prefix="pp-isolation-", dir=base))
    os.chmod(path, 0o755)
    yield path
    isolation.remove_tree(path)


# -- confine: Landlock and limits -------------------------------------------------------------------


@needs_landlock
@pytest.mark.timeout(60)
def test_landlock_confines_files_signals_and_network(tmp_path):
    ro, rw = tmp_path / "ro", tmp_path / "rw"
    ro.mkdir()
    rw.mkdir()
    (ro / "data.txt").write_text("hello")
    secret = ROOT / "solutions" / "schedules.py"
    secret = secret if secret.exists() else ROOT / "pyproject.toml"
    parent = os.getpid()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]

        def confined() -> dict:
            rules = landlock.Confinement(confine.default_read_only([str(ro)]), [str(rw)], ["/dev/null"])
            return {
                "applied": landlock.apply_landlock(rules),
                "read ro": attempt(lambda: (ro / "data.txt").read_text()),
                "write ro": attempt(lambda: (ro / "new.txt").write_text("x")),
                "write rw": attempt(lambda: (rw / "new.txt").write_text("x")),
                "read secret": attempt(secret.read_bytes),
                "read passwd": attempt(Path("/etc/passwd").read_bytes),
                "read shadow": attempt(Path("/etc/shadow").read_bytes),
                "signal parent": attempt(lambda: os.kill(parent, 0)),
                "connect": attempt(lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close()),
            }

        seen = in_child(confined)
    assert seen["applied"].startswith(f"landlock ABI {ABI}: files"), seen["applied"]
    assert seen["read ro"] == "ok" and seen["write rw"] == "ok", seen
    assert seen["write ro"] == "PermissionError", seen
    assert seen["read secret"] == "PermissionError", seen
    assert seen["read passwd"] == "ok", seen
    if Path("/etc/shadow").exists():  # not world-readable: not granted, even to a root process
        assert seen["read shadow"] == "PermissionError", seen
    assert seen["signal parent"] == ("PermissionError" if ABI >= 6 else "ok"), seen
    assert seen["connect"] == ("PermissionError" if ABI >= 4 else "ok"), seen
    assert (rw / "new.txt").exists() and not (ro / "new.txt").exists()


@needs_landlock
@pytest.mark.timeout(180)
def test_confined_python_still_imports_torch_but_not_the_solutions(tmp_path):
    code = (
        "import sys\n"
        "from autograder.harness import confine, landlock\n"
        "c = confine.default_confinement([sys.argv[1]], exclude=[sys.argv[2]])\n"
        "print(landlock.apply_landlock(c))\n"
        "try:\n"
        "    import solutions\n"
        "    print('solutions: imported')\n"
        "except (ImportError, OSError) as exc:\n"
        "    print('solutions:', type(exc).__name__)\n"
        "import importlib, torch\n"
        "importlib.invalidate_caches()\n"
        "import json, numpy\n"
        "print('torch:', float(torch.ones(3).sum()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path), str(ROOT)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "solutions: PermissionError" in proc.stdout, proc.stdout
    assert "torch: 3.0" in proc.stdout, proc.stdout


@needs_landlock
def test_apply_landlock_refuses_a_process_with_threads():
    def confined() -> str:
        stop = threading.Event()
        threading.Thread(target=stop.wait, daemon=True).start()
        try:
            landlock.apply_landlock(landlock.Confinement([], []))
            return "applied"
        except landlock.ConfinementError as exc:
            return str(exc)
        finally:
            stop.set()

    assert "threads" in in_child(confined)


def test_default_read_only_leaves_out_the_project():
    paths = confine.default_read_only([])
    sites = confine._site_folders()
    assert paths and sites
    for path in paths:
        assert not any(confine._within(site, path) for site in sites), f"{path} holds a site-packages folder"
        name = os.path.basename(path)
        assert not confine._project_entry(name), f"{path} is this project's"
        assert (
            not confine._within(path, str(ROOT))
            or any(confine._within(path, s) for s in sites)
            or path.endswith("pyvenv.cfg")
        ), f"{path} is in the repository"
    assert f"/proc/{os.getpid()}" in paths


def test_set_limits_makes_a_large_write_fail_with_efbig(tmp_path):
    target = tmp_path / "flood.txt"

    def flood() -> dict:
        failed = confine.set_limits(memory_bytes=None, file_bytes=4096, max_processes=None)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for _ in range(8):
                os.write(fd, b"x" * 1024)
        except OSError as exc:
            return {"errno": exc.errno, "failed": failed}
        finally:
            os.close(fd)
        return {"errno": None, "failed": failed}

    seen = in_child(flood)
    assert seen["errno"] == errno.EFBIG, seen
    assert "RLIMIT_FSIZE" not in seen["failed"] and "SIGXFSZ" not in seen["failed"], seen
    assert target.stat().st_size == 4096


# -- judge: leases, cleanup, private folders --------------------------------------------------------


def test_isolation_level_describes_itself():
    level = isolation.isolation_level()
    assert level.root == IS_ROOT and level.landlock_abi == ABI
    assert level.describe().startswith(level.name + ":")


@needs_root
def test_lease_uid_gives_distinct_free_uids(tmp_path):
    state = uids.state_dir()  # the machine's: gradings running meanwhile keep their uids
    first, second = uids.lease_uid(state), uids.lease_uid(state)
    try:
        assert first.uid != second.uid
        for held in (first, second):
            assert held.uid in uids.UID_RANGE
            with pytest.raises(KeyError):
                pwd.getpwuid(held.uid)
        busy = start_as(first.uid, lambda: time.sleep(30))
        try:  # another lock folder, and a range of that one uid: only its process stands in the way
            assert wait_until(lambda: busy in uids.processes_of(first.uid))
            with pytest.raises(isolation.IsolationError, match="no free uid"):
                uids.lease_uid(tmp_path / "state", uids=range(first.uid, first.uid + 1))
        finally:
            _end(busy)
        first.release()
        fd = os.open(first.lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: free for the next grading
        finally:
            os.close(fd)
    finally:
        first.release()
        second.release()


@needs_root
def test_state_dir_refuses_links_and_shared_folders(tmp_path):
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(isolation.IsolationError, match="not a folder"):
        uids.lease_uid(tmp_path / "link")
    (tmp_path / "open").mkdir()
    os.chmod(tmp_path / "open", 0o777)
    with pytest.raises(isolation.IsolationError, match="others may write"):
        uids.lease_uid(tmp_path / "open")


@needs_root
@pytest.mark.timeout(60)
def test_kill_uid_processes_ends_daemons_and_nothing_else(lease):
    read_end, write_end = os.pipe()

    def daemonize() -> None:  # the classic double fork: a new session, re-parented away from the test
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.write(write_end, f"{os.getpid()}\n".encode())
                time.sleep(60)
            os._exit(0)

    outsider = subprocess.Popen(["sleep", "60"])
    try:
        os.waitpid(start_as(lease.uid, daemonize), 0)
        os.close(write_end)
        assert select.select([read_end], [], [], 10)[0], "the daemon did not start"
        daemon = int(os.read(read_end, 64))
        assert daemon in uids.processes_of(lease.uid)
        assert uids.kill_uid_processes(lease.uid) >= 1
        assert uids.processes_of(lease.uid) == []
        assert outsider.poll() is None, "a process of another uid was killed"
    finally:
        os.close(read_end)
        outsider.kill()
        outsider.wait()
    for uid in (0, os.geteuid()):
        with pytest.raises(isolation.IsolationError, match="refusing"):
            uids.kill_uid_processes(uid)


@needs_root
@pytest.mark.timeout(60)
def test_remove_files_of_removes_only_that_uids_files(lease, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    os.chmod(root, 0o1777)
    (root / "other.txt").write_text("root's")
    (root / "shared").mkdir()
    os.chmod(root / "shared", 0o777)
    (root / "shared" / "theirs.txt").write_text("root's")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)

    def litter() -> None:
        os.fchdir(root_fd)  # tmp_path's ancestors are private: work relative to the folder
        Path("mine.txt").write_text("x")
        Path("shared/mine.txt").write_text("x")
        os.symlink(outside, "link")
        os.mkfifo("fifo")
        socket.socket(socket.AF_UNIX).bind("sock")
        os.makedirs("tree/ro")
        Path("tree/ro/file").write_text("x")
        os.chmod("tree/ro", 0o500)
        os.chdir("tree")
        for _ in range(80):  # deeper than HOIST_DEPTH
            os.mkdir("d")
            os.chdir("d")

    try:
        os.waitpid(start_as(lease.uid, litter), 0)
    finally:
        os.close(root_fd)
    removed = uids.remove_files_of(lease.uid, [str(root)])
    expected = {str(root / n) for n in ("mine.txt", "link", "fifo", "sock", "tree", "shared/mine.txt")}
    assert set(removed) == expected
    assert outside.read_text() == "keep me"
    assert sorted(p.name for p in root.iterdir()) == ["other.txt", "shared"]
    assert [p.name for p in (root / "shared").iterdir()] == ["theirs.txt"]
    with pytest.raises(isolation.IsolationError, match="refusing"):
        uids.remove_files_of(0, [str(root)])


@needs_root
@pytest.mark.timeout(60)
def test_private_dir_and_remove_tree_as_its_owner(lease, shared_dir, tmp_path):
    call = isolation.prepare_private_dir(shared_dir / "call", lease.uid, lease.gid)
    info = call.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (lease.uid, lease.gid, 0o700)
    outside = shared_dir / "outside.txt"
    outside.write_text("keep me")

    def as_owner() -> bool:  # not root: read-only folders must be made writable again
        become(lease.uid)
        os.makedirs(call / "a" / "b")
        (call / "a" / "b" / "f").write_text("x")
        os.symlink(outside, call / "a" / "link")
        os.chmod(call / "a" / "b", 0o000)
        os.chmod(call / "a", 0o500)
        isolation.remove_tree(call / "a")
        return os.path.lexists(call / "a")

    assert in_child(as_owner) is False
    assert outside.read_text() == "keep me"
    (shared_dir / "planted").symlink_to(tmp_path)
    with pytest.raises(isolation.IsolationError, match="already exists"):
        isolation.prepare_private_dir(shared_dir / "planted", lease.uid, lease.gid)
    isolation.remove_tree(call)
    assert not call.exists() and tmp_path.exists()


def test_readable_by_others(shared_dir):
    (shared_dir / "open.txt").write_text("x")
    os.chmod(shared_dir / "open.txt", 0o644)
    (shared_dir / "closed.txt").write_text("x")
    os.chmod(shared_dir / "closed.txt", 0o600)
    for name, mode in (("tree", 0o755), ("locked", 0o700)):
        (shared_dir / name).mkdir()
        (shared_dir / name / "inner.txt").write_text("x")
        os.chmod(shared_dir / name / "inner.txt", 0o644)
        os.chmod(shared_dir / name, mode)
    paths = [shared_dir / n for n in ("open.txt", "closed.txt", "tree", "locked", "locked/inner.txt", "missing")]
    assert isolation.readable_by_others(paths) == [str(shared_dir / "open.txt"), str(shared_dir / "tree")]
