"""Test-wide ROS 2 isolation, markers and fixtures.

Every pytest process (each xdist worker too) gets its own DDS world before any test runs:
discovery limited to this machine, a ROS_DOMAIN_ID in 1..101 that no other cooperating test
process on the machine holds (a lock file per id), logs in a temp dir, Fast DDS as the RMW.

Fixtures:
    ros_context   a fresh, initialised rclpy Context, shut down after the test
    spawn_python  start a child python (module or script) that joins this test's DDS world;
                  children are interrupted, then killed, at teardown and their output is shown
                  when the test fails
"""

import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

MARKERS = {
    "ros": "needs rclpy and the faster_msgs build (in-process DDS)",
    "multiprocess": "starts child processes that talk over DDS",
    "slow": "takes more than a few seconds",
}
DOMAIN_IDS = range(1, 102)  # 0 is left to whatever else runs on the machine with default settings
SHM_DIR = Path("/dev/shm")
SHM_PREFIXES = ("fastdds_", "fastrtps_")

_held = {}  # keeps the domain lock (and log dir) of this process alive until it exits


def _allocate_domain_id() -> int:
    """Lock and return a free domain id; the lock lasts as long as this process."""
    lock_dir = Path(tempfile.gettempdir()) / "faster_ros_test_domains"
    lock_dir.mkdir(exist_ok=True)
    ids = list(DOMAIN_IDS)
    random.Random(os.getpid() ^ time.time_ns()).shuffle(ids)
    for domain_id in ids:
        fd = os.open(lock_dir / f"{domain_id}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _held["domain_lock_fd"] = fd  # O_CLOEXEC by default: children do not hold it
        return domain_id
    raise RuntimeError(f"all ROS domain ids {DOMAIN_IDS} are locked in {lock_dir}")


def isolate_ros_environment(env=os.environ) -> None:
    """Give this process (and the children it starts) its own local DDS world."""
    env["ROS_DOMAIN_ID"] = str(_allocate_domain_id())
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    log_dir = tempfile.mkdtemp(prefix="faster_ros_test_ros_log_")
    _held["log_dir"] = log_dir
    env["ROS_LOG_DIR"] = log_dir
    for name in ("ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS", "FASTRTPS_DEFAULT_PROFILES_FILE",
                 "FASTDDS_DEFAULT_PROFILES_FILE"):
        env.pop(name, None)


def child_environment(extra: dict | None = None) -> dict:
    """Environment for a child python: this test's DDS settings, a clean bootstrap.

    The pip ROS wheels re-exec the interpreter once, guarded by _ROS_WHEELS_BOOTSTRAP_COMPLETE;
    a child must not inherit that guard or its library path may not be set up.
    """
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def _is_locked(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return True  # gone or not ours: leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def clean_stale_fastdds_shm(min_age_s: float = 5.0) -> int:
    """Remove Fast DDS shared-memory files whose owner process is gone; return the count.

    A live owner keeps a lock on the segment's `_el`/`_sl` file, so an unlocked lock file that is
    not brand new belongs to a dead (e.g. killed) process, whoever started it.
    """
    if not SHM_DIR.is_dir():
        return 0
    removed = 0
    for lock in SHM_DIR.iterdir():
        if not (lock.name.startswith(SHM_PREFIXES) and lock.name.endswith(("_el", "_sl"))):
            continue
        try:
            if time.time() - lock.stat().st_mtime < min_age_s or _is_locked(lock):
                continue
        except OSError:
            continue
        base = lock.name[:-3]
        for name in (base, lock.name, f"sem.{base}_mutex"):
            try:
                (SHM_DIR / name).unlink()
                removed += 1
            except OSError:
                pass
    return removed


def pytest_configure(config):
    for name, description in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {description}")
    isolate_ros_environment()
    clean_stale_fastdds_shm()


def pytest_unconfigure(config):
    clean_stale_fastdds_shm()
    shutil.rmtree(_held.pop("log_dir", ""), ignore_errors=True)


def pytest_report_header(config):
    return f"ROS isolation: ROS_DOMAIN_ID={os.environ.get('ROS_DOMAIN_ID')}, discovery LOCALHOST"


@pytest.fixture
def ros_context():
    """A fresh rclpy Context on this run's domain; nodes created on it are destroyed with it."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        context.try_shutdown()


class _Children:
    """Starts child pythons and stops them (SIGINT, then SIGKILL) at teardown."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def __call__(self, target, args=(), env: dict | None = None, **popen_kwargs):
        """Run `python -m target` (a dotted module) or `python target` (a .py path)."""
        target = str(target)
        is_script = target.endswith(".py") or os.sep in target
        cmd = [sys.executable, *([target] if is_script else ["-m", target]), *map(str, args)]
        log_path = self.log_dir / f"child{len(self.procs)}_{Path(target).stem}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, env=child_environment(env), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    **popen_kwargs)
        self.procs.append((proc, log_path))
        return proc

    def stop_all(self, timeout_s: float = 5.0) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout_s
        for proc, log_path in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            print(f"--- {log_path.name} (exit {proc.returncode}): {proc.args}")
            print(log_path.read_text(errors="replace")[-4000:])


@pytest.fixture
def spawn_python(tmp_path):
    """Factory: spawn_python(module_or_script, args=(), env=None) -> subprocess.Popen.

    The child inherits this run's ROS isolation (domain id, discovery range, log dir) and starts
    its own ROS wheel bootstrap. Output goes to a log that is printed at teardown (pytest shows
    it for failed tests).
    """
    children = _Children(tmp_path)
    try:
        yield children
    finally:
        children.stop_all()
