"""One production topology (tests/topology.py) for all the fault tests: started once, brought back to full
strength before each test, torn down at the end. A failing test prints the tail of every process's log."""

import json
import os
import sys

import pytest

from tests.topology import missing_requirements, topology


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="package")
def topo(tmp_path_factory):
    # Runs wherever its requirements are: on .ci/run's PostgreSQL+Redis pass, and for anyone who sets
    # DATABASE_URL and REDIS_URL. The embedded default pass (no REDIS_URL) skips the whole package through the
    # `redis` marker (tests/conftest.py) before this fixture is reached.
    why = missing_requirements()
    if why:
        if os.environ.get("CI") == "true":
            # CI's second pass installs all of it: a skip there would hide that the module did not run.
            pytest.fail(f"the fault-injection topology cannot start in CI: {why}")
        pytest.skip(f"fault injection needs PostgreSQL, redis-server and nginx: {why}")
    with topology(tmp_path_factory.mktemp("topology")) as running:
        yield running


@pytest.fixture
def topo_ok(topo, request):
    """The topology with every process running and the fake TGI at its start-up settings."""
    topo.ensure_running()
    yield topo
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for role in topo.procs:
            print(f"\n----- {role} (tail of {topo.procs[role].log_path})\n{topo.log(role, 2500)}")


def pytest_terminal_summary(terminalreporter):
    """What the scenarios observed (timings, what participants saw during outages): the evidence behind
    docs/topology.md and behind each xfail."""
    module = sys.modules.get("tests.faults.test_faults")
    observed = getattr(module, "OBSERVED", None)
    if observed:
        terminalreporter.write_sep("-", "fault observations")
        terminalreporter.write_line(json.dumps(observed, indent=1, default=str)[:20000])
