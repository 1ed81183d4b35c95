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
    if os.environ.get("OVERSIGHT_FAULTS") != "1":
        # Opt-in for now: the module passes here (5 passed, 6 strict xfails pinning known bugs) but has not yet
        # had a clean-clone CI run; set OVERSIGHT_FAULTS=1 on the PostgreSQL+Redis pass to run it.
        pytest.skip("fault injection is opt-in: set OVERSIGHT_FAULTS=1 (needs PostgreSQL, Redis, nginx)")
    why = missing_requirements()
    if why:
        pytest.skip(why)
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
