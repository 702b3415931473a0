"""Ping, stats, the context manager, and 20 threads each with its own Client.

Trust boundary: none; a test of the client against the project's own server.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import netproto

from conftest import PASSWORD, SAMPLES, USER, local_result, wait_until


def test_ping_and_stats_counters_move(connect) -> None:
    c = connect()
    rtt = c.ping()
    assert 0 < rtt < c.timeout
    before = c.stats()
    for name in ("connections_open", "logins_ok", "jobs_submitted", "jobs_ok", "pings", "stats_requests", "workers_ready"):
        assert name in before, name
    assert all(isinstance(v, int) for v in before.values())
    assert before["connections_open"] >= 1 and before["workers_ready"] == 2
    c.ping()
    c.submit(SAMPLES / "chelsea_64x64.png", "blur:1")
    after = c.stats()
    assert after["pings"] >= before["pings"] + 1
    assert after["jobs_ok"] >= before["jobs_ok"] + 1
    assert after["jobs_submitted"] >= before["jobs_submitted"] + 1
    assert after["op_blur"] >= before["op_blur"] + 1
    assert after["stats_requests"] >= before["stats_requests"] + 1


def test_context_manager_closes_the_connection(server, known_servers) -> None:
    base = server.try_stats()["connections_open"]
    with netproto.Client(server.addr, USER, PASSWORD, known_servers=known_servers) as c:
        assert not c.closed
        c.ping()
        wait_until("the server to count the connection", 10, lambda: server.try_stats()["connections_open"] == base + 1)
    assert c.closed
    wait_until("the server to see the connection go", 10, lambda: server.try_stats()["connections_open"] == base)
    # Closing twice is harmless; using a closed client is a ConnectionLost.
    c.close()
    try:
        c.ping()
    except netproto.ConnectionLost as e:
        assert "closed" in str(e)
    else:
        raise AssertionError("ping on a closed client worked")


def test_garbage_collected_client_is_closed(server, known_servers) -> None:
    import gc

    base = server.try_stats()["connections_open"]
    c = netproto.Client(server.addr, USER, PASSWORD, known_servers=known_servers)
    wait_until("the connection", 10, lambda: server.try_stats()["connections_open"] == base + 1)
    del c
    gc.collect()
    wait_until("the server to see the connection go", 10, lambda: server.try_stats()["connections_open"] == base)


THREADS = 20
JOBS_PER_THREAD = 4
THREAD_CASES = [
    ("chelsea_64x64.png", "blur:1.5"),
    ("astronaut_128x128.jpg", "thumbnail:48,format:png"),
    ("chelsea_64x64.png", "rotate:270,grayscale"),
    ("astronaut_128x128.jpg", "invert,format:webp"),
]


def test_twenty_threads_each_with_its_own_client(server, known_servers) -> None:
    want = {case: local_result(SAMPLES / case[0], case[1]) for case in THREAD_CASES}
    inputs = {name: (SAMPLES / name).read_bytes() for name, _ in THREAD_CASES}
    # Pin once, so the threads do not race to write the same new line.
    netproto.Client(server.addr, USER, PASSWORD, known_servers=known_servers).close()
    start = threading.Barrier(THREADS, timeout=60)
    before = server.try_stats()

    def worker(t: int) -> list:
        with netproto.Client(server.addr, USER, PASSWORD, known_servers=known_servers, timeout=60) as c:
            start.wait()  # every connection open at once
            bad = []
            for j in range(JOBS_PER_THREAD):
                case = THREAD_CASES[(t + j) % len(THREAD_CASES)]
                r = c.submit(inputs[case[0]], case[1])
                if r.data != want[case]:
                    bad.append((t, j, case))
            return bad

    with ThreadPoolExecutor(THREADS) as pool:
        results = list(pool.map(worker, range(THREADS)))
    assert [b for bad in results for b in bad] == []
    after = server.try_stats()
    assert after["connections_accepted"] - before["connections_accepted"] >= THREADS
    assert after["jobs_ok"] - before["jobs_ok"] >= THREADS * JOBS_PER_THREAD


def test_a_shared_client_serialises_calls(connect) -> None:
    # Not the intended use (one Client per thread), but it must not corrupt the session.
    c = connect()
    want = local_result(SAMPLES / "chelsea_64x64.png", "flip:v")

    def use(i: int) -> bool:
        if i % 2:
            return c.ping() > 0
        return c.submit(SAMPLES / "chelsea_64x64.png", "flip:v").data == want

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(use, range(16)))
