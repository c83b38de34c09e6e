"""ProcessGroup: children are remembered, stopped by PID in reverse order, and killable."""
import sys

import pytest

from trustmesh.services import ProcessGroup, ServiceError, spawn

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
IGNORES_TERM = [sys.executable, "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
                "time.sleep(60)"]


def test_group_stops_every_child_on_exit(tmp_path):
    with ProcessGroup() as group:
        first = group.spawn("a", SLEEPER, log_path=tmp_path / "a.log")
        second = group.spawn("b", SLEEPER, log_path=tmp_path / "b.log")
        assert first.alive and second.alive and first.pid != second.pid
    assert not first.alive and not second.alive
    assert group.children == []


def test_group_stops_children_when_the_body_raises(tmp_path):
    with pytest.raises(RuntimeError), ProcessGroup() as group:
        child = group.spawn("a", SLEEPER, log_path=tmp_path / "a.log")
        raise RuntimeError("boom")
    assert not child.alive


def test_kill_and_dead_listing(tmp_path):
    with ProcessGroup() as group:
        child = group.spawn("victim", SLEEPER)
        other = group.spawn("other", SLEEPER)
        assert child.kill() == -9
        assert group.dead() == [child]
        assert other.alive


def test_terminate_falls_back_to_sigkill(tmp_path):
    log = tmp_path / "stubborn.log"
    child = spawn("stubborn", IGNORES_TERM, log_path=log)
    # wait until the handler is installed (the child says so), else SIGTERM would still kill it
    for _ in range(200):
        if "ready" in child.log_tail():
            break
        child.wait(0.05)
    assert child.terminate(timeout=0.5) == -9
    assert not child.alive


def test_env_and_log_path(tmp_path):
    log = tmp_path / "out.log"
    child = spawn("echo", [sys.executable, "-c", "import os; print(os.environ['TM_X'])"],
                  env={"TM_X": "hello"}, log_path=log)
    assert child.wait(30) == 0
    assert log.read_text().strip() == "hello"


def test_missing_binary_is_a_service_error(tmp_path):
    with pytest.raises(ServiceError, match="cannot start"):
        spawn("nothing", [str(tmp_path / "no-such-binary")])


def test_wait_for_log_sees_a_readiness_line(tmp_path):
    with ProcessGroup() as group:
        child = group.spawn("talker", [sys.executable, "-c",
                                       "import time; print('listening on 1234', flush=True); time.sleep(60)"],
                            log_path=tmp_path / "talker.log")
        assert child.wait_for_log("listening on", timeout=30)
        quitter = group.spawn("quitter", [sys.executable, "-c", "pass"], log_path=tmp_path / "q.log")
        assert not quitter.wait_for_log("never printed", timeout=30)


def test_servers_started_with_a_group_are_stopped_by_it(tmp_path):
    from trustmesh.services import RedisServer

    with ProcessGroup() as group:
        server = RedisServer(data_dir=tmp_path / "r", group=group).start()
        assert group.children == [server.child] and server.alive
    assert not server.alive


def _niceness(stat_path):
    return int(open(stat_path).read().rsplit(")", 1)[1].split()[16])  # field 19 of proc(5): nice


def test_background_children_run_at_a_lower_priority(tmp_path):
    with ProcessGroup() as group:
        normal = group.spawn("normal", SLEEPER)
        background = group.spawn("background", SLEEPER, niceness=10)
        base = _niceness("/proc/self/stat")
        assert _niceness(f"/proc/{normal.pid}/stat") == base
        assert _niceness(f"/proc/{background.pid}/stat") == min(19, base + 10)


def test_the_history_replay_thread_runs_at_a_lower_priority():
    import threading

    from trustmesh.history.outbox import lower_thread_priority

    seen = {}

    def body():
        lower_thread_priority()
        seen["nice"] = _niceness(f"/proc/self/task/{threading.get_native_id()}/stat")

    base = _niceness("/proc/self/stat")
    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen["nice"] == min(19, base + 10) and _niceness("/proc/self/stat") == base  # the process itself is untouched
