"""WebSocket conformance: the Autobahn|Testsuite cases, driven by kosoku, on kefu's stack.

kosoku (PyPI, a Rust runner of the Autobahn case files; the original
autobahntestsuite needs Python 2) connects to a test-only echo route served
exactly as `kefu serve` serves (see `echo_server.py`). Its verdicts are
compared with a calibration run against python-websockets' own compliance
server on the same cases: kefu's stack may not fail a case the reference
passes. Known reference verdicts: 7.1.5 FAILED (a close with an invalid
UTF-8 reason is answered with 1002 instead of echoing 1000, which RFC 6455
allows) and NON-STRICT on the fail-fast cases (3.x, 4.x, 5.15, 6.4.x).

The case files give the server 0.5 s (the UTF-8 cases of section 6) or 1 s
to answer before the runner kills the connection. On a loaded machine that
lost cases kefu passes when quiet (CI lost 6.22.9 and 6.22.19), so every such
deadline is raised to `KILL_DEADLINE` (`patient_cases`): kosoku has no option
for it, but it runs the Python case files in this process, and each case
calls `killAfter` on the protocol object it was given. A conforming server
answers long before any deadline, so the cases take no longer. The servers
run one after the other, not side by side, and a lost case fails the test
with what kosoku saw (no reruns: a flake is reported, not hidden).

CI: sections 1-7, 9 and 10 with a large frame limit, plus the production
limit (64 KiB: 9.1.2 and up must be closed with 1009). KEFU_SLOW_TESTS=1 adds
12.* and 13.* (permessage-deflate, which kefu turns off: UNIMPLEMENTED).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.ci import in_ci
from support.servers import free_port

from .conftest import SLOW

try:
    import kosoku
    from kosoku import _caseindex
except ImportError:
    if in_ci():
        pytest.fail("kosoku is not installed (pip install -e '.[dev]'); CI needs it", pytrace=False)
    pytest.skip("kosoku is not installed (pip install kosoku)", allow_module_level=True)

pytestmark = pytest.mark.timeout(900 if SLOW else 120)

ECHO = Path(__file__).with_name("echo_server.py")
CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]
COMPRESSION = ["12.*", "13.*"]
KILL_DEADLINE = 10.0  # seconds a case gives the server, at least (the case files say 0.5 to 10)


class Echo:
    def __init__(self, log: Path, *args: str) -> None:
        self.port = free_port()
        self.log = log
        with log.open("wb") as err:  # a file, not a pipe: a full pipe would block the server
            self.proc = subprocess.Popen(
                [sys.executable, str(ECHO), str(self.port), *args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=0.5)
                break  # any HTTP answer: it listens
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"echo server did not start: {self.stderr()}") from None
                time.sleep(0.05)
        self.url = f"ws://127.0.0.1:{self.port}/echo"

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


class _Patient:
    """The runner's protocol object, with every kill deadline at least `KILL_DEADLINE`."""

    def __init__(self, protocol: Any) -> None:
        object.__setattr__(self, "_protocol", protocol)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._protocol, name, value)

    def killAfter(self, secs: float) -> None:  # the Autobahn case API's name
        KILLS_ASKED.append(secs)
        self._protocol.killAfter(max(secs, KILL_DEADLINE))


KILLS_ASKED: list[float] = []  # the deadlines the cases asked for (to check the hook is used)


@pytest.fixture(scope="module", autouse=True)
def patient_cases() -> Iterator[None]:
    """Every case of this module gets the longer deadline (the case classes live in `case`)."""
    _caseindex.initialize_shims()  # puts kosoku's case files on sys.path, as the runner does
    import case as autobahn_case

    base = autobahn_case.Case
    original = base.__init__

    def init(self: Any, protocol: Any) -> None:
        original(self, _Patient(protocol))

    base.__init__ = init
    try:
        yield
    finally:
        base.__init__ = original


@pytest.fixture(scope="module")
def echoes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Echo]]:
    logs = tmp_path_factory.mktemp("echo")
    servers = {
        # kefu's stack, with a frame limit that lets 9.* run
        "kefu": Echo(logs / "kefu.log", "33554432"),
        # kefu's stack, exactly as configured by default
        "kefu-production": Echo(logs / "production.log"),
        "reference": Echo(logs / "reference.log", "calibrate"),
    }
    try:
        yield servers
    finally:
        for echo in servers.values():
            echo.stop()


async def _run(url: str, cases: list[str]) -> dict[str, Any]:
    try:
        results = await kosoku.run_fuzzingclient(url, cases, None, concurrency=4)
    except kosoku.FailureError as failure:
        results = failure.results
    return {r.case_id: r for r in results}


def _summary(results: dict[str, Any]) -> dict[str, Any]:
    verdicts = Counter(f"{r.behavior.value}/{r.behavior_close.value}" for r in results.values())
    failed = sorted((c for c, r in results.items() if not r.passed), key=_key)
    return {"cases": len(results), "verdicts": dict(verdicts), "not_passed": failed}


def _key(case: str) -> list[int]:
    return [int(p) for p in case.split(".")]


def _lost(results: dict[str, Any], cases: list[str]) -> dict[str, Any]:
    """What kosoku saw of each case in `cases`, for the failure message."""
    return {
        c: {
            "behavior": f"{results[c].behavior.value}/{results[c].behavior_close.value}",
            "result": results[c].result,
            "close": results[c].result_close,
            "ms": results[c].duration,
            "killed_by_runner": results[c].dropped_by_me,
            "remote_close_code": results[c].remote_close_code,
        }
        for c in cases
    }


async def test_autobahn_cases_on_kefus_stack(echoes: dict[str, Echo]) -> None:
    cases = CASES + (COMPRESSION if SLOW else [])
    kefu = await _run(echoes["kefu"].url, cases)
    reference = await _run(echoes["reference"].url, cases)
    assert kefu.keys() == reference.keys() and len(kefu) >= 300
    assert KILLS_ASKED, "the cases no longer call killAfter through `_Patient`"
    report = {"kefu": _summary(kefu), "reference (python-websockets)": _summary(reference)}
    print("AUTOBAHN:", json.dumps(report))
    worse = [c for c, r in kefu.items() if not r.passed and reference[c].passed]
    assert worse == [], _lost(kefu, worse)
    for c, r in kefu.items():
        if c.startswith(("12.", "13.")):
            # compression is off: the cases cannot run, and nothing must break
            assert r.behavior.value in ("UNIMPLEMENTED", "OK", "NON-STRICT", "INFORMATIONAL"), c
        elif not r.passed:
            assert c == "7.1.5", (c, r.behavior.value, r.result)


async def test_production_frame_limit_closes_with_1009(echoes: dict[str, Echo]) -> None:
    got = await _run(echoes["kefu-production"].url, ["9.1.*", "9.2.*"])
    print("AUTOBAHN 64 KiB:", json.dumps(_summary(got)))
    assert got["9.1.1"].passed and got["9.2.1"].passed  # 64 KiB: at the limit, echoed
    for case in ("9.1.2", "9.1.3", "9.1.4", "9.1.5", "9.1.6", "9.2.2", "9.2.3", "9.2.4"):
        assert got[case].remote_close_code == 1009, (case, got[case].result)
