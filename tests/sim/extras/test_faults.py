"""Fault injection: SPEC parsing, determinism, and each fault kind as a client sees it over HTTP."""

from __future__ import annotations

import aiohttp
import pytest

from bulkops.sim.faults import ACCEPTED_FORMS, FaultInjector, FaultSpec, parse_faults
from bulkops.sim.requestlog import RequestLog

from .conftest import TinyApi, serve


def test_parse_full_spec() -> None:
    """Every item of the SPEC lands in its field; methods may be listed with commas."""
    spec = parse_faults("503=0.05,reset=0.02,lost=0.02,latency=5ms~3ms,seed=42,methods=POST,patch")
    assert spec == FaultSpec(0.05, 0.02, 0.02, 0.005, 0.003, 42, frozenset({"POST", "PATCH"}))
    assert spec.render() == "503=0.05,reset=0.02,lost=0.02,latency=5ms~3ms,seed=42,methods=PATCH,POST"
    assert parse_faults("none") == FaultSpec()
    assert parse_faults("latency=1s") == FaultSpec(latency=1.0)


@pytest.mark.parametrize(("spec", "problem"), [
    ("503=2", "bad probability '2'"),
    ("latency=5", "bad duration '5'"),
    ("explode=0.1", "cannot read 'explode=0.1'"),
    ("503=0.6,lost=0.6", "the probabilities sum to more than 1"),
])
def test_parse_errors_name_the_spec_and_the_accepted_forms(spec: str, problem: str) -> None:
    """A bad fault SPEC is a ValueError naming the SPEC, the problem and the accepted forms."""
    with pytest.raises(ValueError, match="fault spec") as info:
        parse_faults(spec)
    assert str(info.value) == f"fault spec {spec!r}: {problem}; {ACCEPTED_FORMS}"


def test_same_seed_same_faults() -> None:
    """Two injectors with the same SPEC decide the same faults for the same request sequence."""
    methods = ["GET", "PATCH", "POST", "GET"] * 250
    spec = "503=0.1,reset=0.1,lost=0.1,latency=5ms~3ms,seed=7"
    first = [FaultInjector(spec).decide(m) for m in methods]  # a fresh injector per call: always draw 1
    a, b = FaultInjector(spec), FaultInjector(spec)
    run_a = [a.decide(m) for m in methods]
    assert run_a == [b.decide(m) for m in methods]
    assert run_a != [FaultInjector(spec.replace("seed=7", "seed=8")).decide(m) for m in methods]
    assert len(set(first)) == 1
    kinds = [fault for fault, _ in run_a]
    assert 60 < kinds.count("503") < 140 and 60 < kinds.count("lost") < 140
    assert all(0.002 <= delay <= 0.008 for _, delay in run_a)


def test_methods_filter_leaves_other_methods_alone() -> None:
    """With methods=POST only POSTs draw faults."""
    injector = FaultInjector("503=1,methods=POST")
    assert injector.decide("GET") == (None, 0.0)
    assert injector.decide("POST") == ("503", 0.0)
    assert injector.statistics().requests == 1


@pytest.mark.anyio
async def test_503_is_empty_and_not_applied() -> None:
    """A 503 fault answers 503 with an empty body and never reaches the handler."""
    api, log = TinyApi(), RequestLog()
    faults = FaultInjector("503=1")
    async with serve(api.app([log.make_middleware(), faults.make_middleware()])) as url, \
            aiohttp.ClientSession() as http, http.post(f"{url}/v7/thing", json={}) as r:
        assert (r.status, await r.read()) == (503, b"")
    assert api.committed == 0
    assert [(e.status, e.outcome) for e in log.entries()] == [(503, "fault:503")]


@pytest.mark.anyio
async def test_reset_drops_the_connection_before_the_handler() -> None:
    """A reset fault closes the connection: the client gets a connection error and nothing is applied."""
    api, log = TinyApi(), RequestLog()
    faults = FaultInjector("reset=1")
    async with serve(api.app([log.make_middleware(), faults.make_middleware()])) as url, \
            aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.post(f"{url}/v7/thing", json={}) as r:
                await r.read()
    assert api.committed == 0
    assert [(e.method, e.status, e.outcome) for e in log.entries()] == [("POST", 0, "fault:reset")]


@pytest.mark.anyio
async def test_lost_applies_then_drops_the_answer() -> None:
    """A lost fault runs the handler (the write is committed) but the client gets no answer."""
    api, log = TinyApi(), RequestLog()
    faults = FaultInjector("lost=1")
    async with serve(api.app([log.make_middleware(), faults.make_middleware()])) as url, \
            aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.patch(f"{url}/v7/thing", json={}) as r:
                await r.read()
        faults.set_spec("none")
        async with http.post(f"{url}/v7/thing", json={}) as r:  # the server keeps serving
            assert r.status == 201
    assert api.committed == 2
    assert [(e.method, e.status, e.outcome) for e in log.entries()] == [
        ("PATCH", 201, "fault:lost"), ("POST", 201, "ok")]


@pytest.mark.anyio
async def test_latency_sleeps_with_jitter() -> None:
    """latency=D~J sleeps between D-J and D+J before handling (injected sleep records it)."""
    slept: list[float] = []

    async def record(seconds: float) -> None:
        slept.append(seconds)

    faults = FaultInjector("latency=50ms~10ms,seed=3", sleep=record)
    async with serve(TinyApi().app([faults.make_middleware()])) as url, aiohttp.ClientSession() as http:
        for _ in range(20):
            async with http.get(f"{url}/v7/thing") as r:
                assert r.status == 200
    assert len(slept) == 20
    assert all(0.04 <= s <= 0.06 for s in slept)
    assert len(set(slept)) > 1


@pytest.mark.anyio
async def test_admin_put_and_get_faults() -> None:
    """PUT /_sim/faults replaces the SPEC (400 with the reason when bad); GET shows it and the counts."""
    faults = FaultInjector()
    app = TinyApi().app([faults.make_middleware()])
    faults.add_routes(app)
    async with serve(app) as url, aiohttp.ClientSession() as http:
        async with http.put(f"{url}/_sim/faults", json={"spec": "503=1,methods=GET"}) as r:
            assert r.status == 200
        async with http.get(f"{url}/v7/thing") as r:
            assert r.status == 503
        async with http.get(f"{url}/_sim/faults") as r:
            assert await r.json() == {"spec": "503=1,seed=0,methods=GET", "requests": 1, "503": 1,
                                      "reset": 0, "lost": 0}
        async with http.put(f"{url}/_sim/faults", json={"spec": "503=2"}) as r:
            assert r.status == 400
            assert (await r.json())["error"] == f"fault spec '503=2': bad probability '2'; {ACCEPTED_FORMS}"
