"""The sandwich report in a real browser (Debian chromium via Playwright), on the seeded demo after 8 bots.

One journey (a module-scoped fixture) against daphne on its own demo database:

1. `run_bots demo --participants 8` against the live server (as tests/dev/test_bots.py runs it), then one bot
   is excluded (through the service, as the console's exclude button does) so the toggle has something to show;
2. log in as the demo researcher and open the demo study's report: the table and the four plots (separate SVG
   files in <img>; each must load: naturalWidth > 0), with no console error (a CSP violation is one);
3. switch to "Without exclusions" (a plain link), open the per-item page from a table row and a transcript from
   it, and open one plot's SVG file directly (its own CSP must let its inline styles through).

Screenshots: test-artifacts/browser/report.png (the whole page), report-without.png, report-items.png,
report-plot.png.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)"),
]

RESEARCHER = ("researcher", "oversight-demo")
N_BOTS = 8
WAIT_MS = 60_000
PLOTS = ("sandwich", "reliability", "participants", "confidence")  # in the page's order

IMAGES_JS = """() => Array.from(document.querySelectorAll('#report-plots img')).map(i => ({
  src: i.getAttribute('src'), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))"""


@dataclass
class Journey:
    bots: dict = field(default_factory=dict)
    excluded: int = 0
    console: list[str] = field(default_factory=list)  # console errors and warnings, page errors
    primary: dict = field(default_factory=dict)
    without: dict = field(default_factory=dict)
    items: dict = field(default_factory=dict)
    transcript_url: str = ""
    svg: dict = field(default_factory=dict)
    screenshots: dict[str, Path] = field(default_factory=dict)


def _table(page) -> dict:
    return {
        "summary": page.inner_text("#report-summary"),
        "header": page.locator("#report-table thead tr").first.inner_text(),
        "rows": {
            row.locator("th").inner_text().strip(): [c.strip() for c in row.locator("td").all_inner_texts()]
            for row in page.locator("#report-table tbody tr").all()
        },
    }


def _journey(server, browser, artifacts: Path, tmp: Path) -> Journey:
    journey = Journey()
    proc = server.manage(
        "run_bots",
        "demo",
        "--participants",
        str(N_BOTS),
        "--concurrency",
        str(N_BOTS),
        "--seed",
        "5",
        "--timeout-rate",
        "0",
        "--base-url",
        server.base_url,
        timeout=300,
        check=False,
    )
    journey.bots = {"rc": proc.returncode, "out": proc.stdout + proc.stderr[-3000:]}
    journey.excluded = server.query(
        "from django.contrib.auth import get_user_model\n"
        "from oversight.core.models import Participant\n"
        "from oversight.core.services.exclusions import exclusion_add\n"
        "p = Participant.objects.filter(study__slug='demo', is_pilot=False).order_by('pk').first()\n"
        "exclusion_add(participant=p, reason='browser test', rule='manual',\n"
        "              by=get_user_model().objects.get(username='researcher'))\n"
        "result = p.pk"
    )

    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on(
        "console", lambda m: journey.console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda exc: journey.console.append(f"pageerror: {exc}"))
    base = server.base_url

    def shot(name: str, full_page: bool = True) -> None:
        path = artifacts / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        journey.screenshots[name] = path

    def plots_loaded() -> list[dict]:
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('#report-plots img')).every(i => i.complete)"
        )
        return page.evaluate(IMAGES_JS)

    page.goto(f"{base}/console/login/")
    page.fill("#id_username", RESEARCHER[0])
    page.fill("#id_password", RESEARCHER[1])
    with page.expect_navigation():
        page.click("main form button[type=submit]")

    # The report, from the study page's link.
    page.goto(f"{base}/console/studies/demo/")
    with page.expect_navigation():
        page.click("main >> text=Report")
    page.wait_for_selector("#report-table")
    journey.primary = {
        **_table(page),
        "images": plots_loaded(),
        "url": page.url,
        "sandwich": page.inner_text("#report-sandwich"),
        "method": page.inner_text("#report-method"),
    }
    shot("report")

    with page.expect_navigation():
        page.click(".report-toggle >> text=Without exclusions")
    page.wait_for_selector("#report-table")
    journey.without = {**_table(page), "images": plots_loaded(), "url": page.url}
    shot("report-without")

    # Drill down: the assisted row → its items → a participant's transcript at that item.
    with page.expect_navigation():
        page.locator("#report-table tbody tr[data-key$=':vote']").last.locator("a").click()
    page.wait_for_selector("#report-items")
    journey.items = {
        "url": page.url,
        "rows": page.locator("#report-items tbody tr[data-item]").count(),
        "header": page.inner_text("#report-items thead"),
    }
    shot("report-items")
    with page.expect_navigation():
        page.locator("#report-items td.links a").first.click()
    journey.transcript_url = page.url

    # One plot opened as a document: its own CSP (inline styles allowed, nothing else) is what applies.
    page.goto(f"{base}/console/studies/demo/report/sandwich.svg")
    journey.svg = {"text": page.locator("svg").first.inner_html()}
    shot("report-plot", full_page=False)  # (a bare SVG document has no page to scroll)
    context.close()
    return journey


@pytest.fixture(scope="module")
def journey(browser_server, chromium, artifacts, tmp_path_factory) -> Journey:
    try:
        return _journey(browser_server, chromium, artifacts, tmp_path_factory.mktemp("report"))
    except Exception:
        print("--- daphne log (tail)\n" + browser_server.log_tail())
        raise


def test_the_bots_finish(journey):
    assert journey.bots["rc"] == 0, journey.bots["out"][-3000:]
    assert f"participants completed: {N_BOTS}/{N_BOTS}" in journey.bots["out"], journey.bots["out"][-3000:]


def test_the_report_table_has_the_papers_rows_for_both_demo_tasks(journey):
    rows = journey.primary["rows"]
    # The demo seeds the simulated assistant's zero-shot baseline (seed_demo): all three numbers of the sandwich.
    assert list(rows) == [
        "Unaided",
        "Unaided vote",
        "Model (zero-shot) on its split",
        "Model (zero-shot) on the study's items",
        "Assisted",
        "Assisted vote",
        "Expert human (published)",
    ]
    header = journey.primary["header"]
    assert "MMLU" in header and "QuALITY" in header and "All" in header
    for label in ("Unaided", "Unaided vote", "Assisted", "Assisted vote"):
        cells = rows[label]
        assert len(cells) == 9, (label, cells)  # accuracy [CI], CE, N for MMLU, QuALITY and All
        assert re.fullmatch(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", cells[0]), (label, cells[0])
        assert cells[2] == "3" and cells[5] == "2" and cells[8] == "5", (label, cells)  # items per task
    study_items = rows["Model (zero-shot) on the study's items"]
    assert (study_items[2], study_items[5], study_items[8]) == ("6", "4", "10")  # both conditions' items
    assert rows["Model (zero-shot) on its split"][2].endswith("(val)")  # N names the split
    assert rows["Expert human (published)"][:3] == ["90.0 reference", "–", "–"]
    assert f"{N_BOTS - 1} participants" in journey.primary["summary"]
    assert f"P{journey.excluded}" in journey.primary["summary"]
    assert "Assisted" in journey.primary["sandwich"] and " pp" in journey.primary["sandwich"]
    assert "2000 resamples; seed 0" in journey.primary["method"]


def test_the_four_plots_load_as_images(journey):
    for state in (journey.primary, journey.without):
        images = state["images"]
        assert [re.search(r"/report/(\w+)\.svg", i["src"]).group(1) for i in images] == list(PLOTS)
        assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images), images
    assert all("exclusions=off" in i["src"] for i in journey.without["images"])


def test_the_toggle_includes_the_excluded_participant(journey):
    assert "exclusions=off" in journey.without["url"]
    assert f"{N_BOTS} participants" in journey.without["summary"]
    assert "Every non-pilot participant included" in journey.without["summary"]
    assert journey.primary["rows"] != journey.without["rows"]


def test_the_drill_down_reaches_items_and_a_transcript(journey):
    assert "/report/items/" in journey.items["url"] and "condition=" in journey.items["url"]
    assert journey.items["rows"] == 5  # the assisted condition's 3 MMLU + 2 QuALITY items
    assert "Vote" in journey.items["header"] and "% right" in journey.items["header"]
    assert re.search(r"/console/studies/demo/participants/\d+/#item-\d+$", journey.transcript_url)


def test_the_plot_file_opens_on_its_own(journey):
    assert "The sandwich: accuracy with 95% CIs" in journey.svg["text"]
    assert "MMLU" in journey.svg["text"] and "QuALITY" in journey.svg["text"]


def test_nothing_is_blocked_and_nothing_fails_in_the_page(journey):
    assert journey.console == [], journey.console
