"""What ``make run`` becomes once the application is RUNNING: a few MiB that hold the
terminal, instead of a Ray driver holding ~170 MiB (PSS) for nothing.

``deployments.launch`` starts Ray, deploys, and then replaces itself (``os.execv``, same
PID) with this file run by a bare interpreter (``python -S``: no site-packages, nothing
imported but the standard library). Ray's processes stay its children; Serve's actors
are detached, so they outlive the driver that created them.

On Ctrl-C or SIGTERM it shuts Serve down gracefully (a short-lived driver runs
``serve.shutdown()``, so every replica drains and closes its decision log), then stops
its own descendants by PID: SIGTERM, then SIGKILL for what is left. Never ``ray stop``,
which would kill every Ray on the machine. If Ray's GCS dies by itself, it exits.

    python -S deployments/supervise.py GCS_ADDRESS GCS_PID PYTHON [CONFIG]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

#: How long the graceful ``serve.shutdown()`` may take before processes are stopped.
SHUTDOWN_TIMEOUT_S = 60.0
#: How long stopped processes get between SIGTERM and SIGKILL.
KILL_GRACE_S = 10.0


def descendants(root: int) -> list[int]:
    """PIDs of every live process below ``root``, from /proc (no psutil here)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])  # after "(comm)": state, ppid
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            out.append(pid)
            todo.append(pid)
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return b") Z " not in f.read()  # a zombie is gone, only not yet reaped
    except OSError:
        return False


def reap_children() -> None:
    """Collect exited children (they are ours since the exec) so they are not zombies."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def stop_tree(root: int) -> None:
    pids = descendants(root)
    for sig, grace in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            reap_children()
            pids = [p for p in pids if alive(p)] + [p for p in descendants(root) if p not in pids]
            if not pids:
                return
            time.sleep(0.1)


def main(argv: list[str]) -> int:
    gcs_address, gcs_pid, python = argv[0], int(argv[1]), argv[2]
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stopping:
        reap_children()
        if not alive(gcs_pid):
            print("Edge Allocator: Ray's GCS exited; stopping", flush=True)
            break
        time.sleep(0.5)
    else:
        print("Edge Allocator: stopping (graceful Serve shutdown, then Ray)", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut it short
        try:
            subprocess.run([python, "-m", "deployments.launch", "--shutdown", gcs_address],
                           timeout=SHUTDOWN_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            print(f"Edge Allocator: Serve shutdown took over {SHUTDOWN_TIMEOUT_S:.0f} s; "
                  "stopping Ray anyway", flush=True)
    stop_tree(os.getpid())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
