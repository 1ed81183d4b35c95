"""A researcher's whole run of a study in the console, in a real browser (Debian chromium via Playwright).

One journey (a module-scoped fixture) against daphne on the seeded demo database, through the real UI only
(forms filled, buttons clicked):

1. log in as the demo researcher;
2. upload an MMLU sample (a zip of three official val CSVs from ../shared/datasets/mmlu) and wait for the
   import job to finish with its counts;
3. create a study with an unaided and an assisted condition (the seeded "Simulated assistant") and a task
   on the uploaded bank (2 items per condition, 60 s per item), and launch it after the confirmation page
   (the manifest hash is shown);
4. open the live monitor and watch it while `run_bots <slug> --participants 20` runs against the same server
   in a subprocess: rows appear and reach "Completed", and the table's websocket update counter rises, all
   without reloading the page;
5. open a transcript from the monitor, exclude that participant with a reason, and see the exclusion on the
   transcript page and on the exclusions page.

The tests then check what the journey saw against the database. Screenshots of each step go to
test-artifacts/browser/console-*.png.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM
from tests.live_server import REPO

MMLU_DIR = REPO.parent / "shared" / "datasets" / "mmlu"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)"),
    pytest.mark.skipif(
        not (MMLU_DIR / "val").is_dir(),
        reason=f"{MMLU_DIR}/val is absent: the uploaded MMLU sample is made from the shared datasets",
    ),
]
SUBJECTS = ("abstract_algebra", "anatomy", "astronomy")
BANK_NAME = "MMLU sample (browser)"
SLUG = "console-browser"
RESEARCHER = ("researcher", "oversight-demo")
ENDPOINT_LABEL = "Simulated assistant (simulated)"
N_BOTS = 20
ITEMS_PER_CONDITION = 2
EXCLUDE_REASON = "Browser test: reported using a search engine"
WAIT_MS = 20_000
BOTS_DEADLINE_S = 90
SCREENSHOTS = (
    "login",
    "upload",
    "job",
    "design",
    "launch-confirm",
    "launched",
    "monitor-empty",
    "monitor-live",
    "monitor-done",
    "transcript",
    "excluded",
    "exclusions",
)

# What the monitor table shows right now (read in the page, so no round trip per row).
MONITOR_JS = """() => {
  const t = document.getElementById('monitor');
  const rows = Array.from(t.querySelectorAll('tbody tr[data-id]'));
  return {updates: parseInt(t.dataset.updates || '0', 10), rows: rows.length,
          completed: rows.filter(r => r.cells[1].textContent.trim() === 'Completed').length,
          done: rows.reduce((n, r) => n + parseInt(r.cells[2].textContent.split('/')[0], 10), 0),
          state: document.getElementById('monitor-state').textContent.trim(),
          summaryCompleted: parseInt((document.querySelector("#summary-status td[data-status='Completed']")
                                      || {textContent: '-1'}).textContent, 10),
          marker: window.__sameDocument === true};
}"""


@dataclass
class Journey:
    base_url: str
    screenshots: dict[str, Path] = field(default_factory=dict)
    page_errors: list[str] = field(default_factory=list)
    csv_items: int = 0
    job: dict = field(default_factory=dict)
    launch_confirmation: str = ""
    manifest_hash: str = ""
    monitor: list[dict] = field(default_factory=list)  # samples: {t, updates, rows, completed, done, ...}
    bots: dict = field(default_factory=dict)
    transcript: dict = field(default_factory=dict)
    exclusions_page: list[str] = field(default_factory=list)
    db: dict = field(default_factory=dict)


def _mmlu_zip(tmp: Path) -> tuple[Path, int]:
    """A zip of a few official MMLU val CSVs (as `val/<subject>_val.csv`), and how many questions it holds."""
    path = tmp / "mmlu-sample.zip"
    n = 0
    with zipfile.ZipFile(path, "w") as archive:
        for subject in SUBJECTS:
            source = MMLU_DIR / "val" / f"{subject}_val.csv"
            archive.write(source, f"val/{source.name}")
            with open(source, newline="", encoding="utf-8") as f:
                n += sum(1 for _ in csv.reader(f))
    return path, n


def _journey(server, browser, artifacts: Path, tmp: Path) -> Journey:
    journey = Journey(base_url=server.base_url)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda exc: journey.page_errors.append(f"{page.url}: {exc}"))
    base = server.base_url

    def shot(kind: str) -> None:
        path = artifacts / f"console-{kind}.png"
        page.screenshot(path=str(path), full_page=True)
        journey.screenshots[kind] = path

    def submit(form: str = "form.design-form") -> None:
        with page.expect_navigation():
            page.click(f"{form} button[type=submit]")

    # 1. Log in (the console sends an anonymous visitor to the login page).
    page.goto(f"{base}/console/")
    page.wait_for_url(re.compile(r"/console/login/"))
    page.fill("#id_username", RESEARCHER[0])
    page.fill("#id_password", RESEARCHER[1])
    shot("login")
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    assert page.url.rstrip("/").endswith("/console"), page.url

    # 2. Upload the MMLU sample and wait for the import job.
    upload, journey.csv_items = _mmlu_zip(tmp)
    page.click("nav >> text=Banks")
    page.click("text=Upload a bank")
    page.wait_for_url(re.compile(r"/console/banks/upload$"))
    page.set_input_files("#id_file", str(upload))
    page.fill("#id_bank_name", BANK_NAME)
    shot("upload")
    submit()
    page.wait_for_url(re.compile(r"/console/jobs/\d+/$"))
    page.wait_for_selector("#job-status.job-done", timeout=60_000)
    journey.job = {"url": page.url, "summary": page.locator("#job-status .summary-lines li").all_inner_texts()}
    shot("job")

    # 3. Create the study, its two conditions and its task; launch it.
    page.click("nav >> text=New study")
    page.wait_for_url(re.compile(r"/console/studies/new$"))
    page.fill("#id_title", "Console browser test")
    page.fill("#id_slug", SLUG)
    submit()
    page.wait_for_url(re.compile(rf"/console/studies/{SLUG}/design$"))

    for name, kind in (("Unaided", "unaided"), ("Assisted", "assisted")):
        page.click("text=Add a condition")
        page.wait_for_url(re.compile(r"/conditions/new$"))
        page.fill("#id_name", name)
        page.select_option("#id_kind", kind)
        if kind == "assisted":
            page.select_option("#id_endpoint", label=ENDPOINT_LABEL)
        submit()
        page.wait_for_url(re.compile(rf"/console/studies/{SLUG}/design$"))

    page.click("text=Add a task")
    page.wait_for_url(re.compile(r"/tasks/new$"))
    page.fill("#id_name", "MMLU sample")
    bank_label = page.locator("#id_bank option", has_text=BANK_NAME).inner_text().strip()
    page.select_option("#id_bank", label=bank_label)
    page.fill("#id_sample_size", str(ITEMS_PER_CONDITION))
    page.fill("#id_time_limit_s", "60")
    submit()
    page.wait_for_url(re.compile(rf"/console/studies/{SLUG}/design$"))
    page.wait_for_selector("#design-parts .ok")  # "Ready to launch"
    shot("design")

    page.click("#design-parts .ok a")
    page.wait_for_url(re.compile(rf"/console/studies/{SLUG}/$"))
    page.click("main >> text=Launch…")
    page.wait_for_url(re.compile(rf"/console/studies/{SLUG}/launch$"))  # a confirmation first
    journey.launch_confirmation = page.inner_text("main")
    shot("launch-confirm")
    with page.expect_navigation():
        page.click("text=Launch now")
    journey.manifest_hash = page.inner_text("#manifest-hash").strip()
    shot("launched")

    # 4. The live monitor while the bots run.
    page.click("text=Live monitor")
    page.wait_for_url(re.compile(rf"/console/studies/{SLUG}/monitor/$"))
    page.wait_for_function("() => parseInt(document.getElementById('monitor').dataset.updates || '0', 10) >= 1")
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads or navigates
    start = time.monotonic()

    def sample() -> dict:
        state = page.evaluate(MONITOR_JS)
        state["t"] = round(time.monotonic() - start, 2)
        journey.monitor.append(state)
        return state

    sample()
    shot("monitor-empty")
    log_path = tmp / "run_bots.log"
    with open(log_path, "w") as log:
        bots = subprocess.Popen(
            [
                sys.executable,
                str(REPO / "manage.py"),
                "run_bots",
                SLUG,
                "--participants",
                str(N_BOTS),
                "--base-url",
                base,
                "--seed",
                "7",
                "--concurrency",
                "5",
                "--timeout-rate",
                "0",
                "--think-ms",
                "300",
            ],
            cwd=REPO,
            env=server.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        live_shot = False
        while time.monotonic() - start < BOTS_DEADLINE_S:
            state = sample()
            if not live_shot and state["completed"] > 0 and state["rows"] < N_BOTS:
                shot("monitor-live")
                live_shot = True
            if bots.poll() is not None and state["completed"] >= N_BOTS:
                break
            page.wait_for_timeout(250)
        else:
            raise AssertionError(
                f"the bots or the monitor did not finish in {BOTS_DEADLINE_S} s; "
                f"last monitor state {journey.monitor[-1]}"
            )
    finally:
        if bots.poll() is None:
            bots.kill()
        bots.wait(timeout=10)
    journey.bots = {
        "rc": bots.returncode,
        "log": log_path.read_text(errors="replace"),
        "elapsed_s": round(time.monotonic() - start, 2),
    }
    if not live_shot:
        shot("monitor-live")
    shot("monitor-done")

    # 5. A transcript from the monitor; exclude that participant.
    link = page.locator("#monitor tbody tr[data-id] a").first
    label = link.inner_text().strip()
    with page.expect_navigation():
        link.click()
    assert re.search(rf"/console/studies/{SLUG}/participants/\d+/$", page.url), page.url
    journey.transcript = {
        "url": page.url,
        "label": label,
        "heading": page.inner_text("h1"),
        "items": page.locator("section.transcript-item").count(),
        "before": page.inner_text("section.card:has(h2:text-is('Exclusion'))"),
    }
    shot("transcript")
    page.fill(".exclude-form input[name=reason]", EXCLUDE_REASON)
    submit(".exclude-form")
    journey.transcript.update(
        {
            "after_url": page.url,
            "messages": page.locator("ul.messages li").all_inner_texts(),
            "after": page.inner_text("section.card:has(h2:text-is('Exclusion'))"),
        }
    )
    shot("excluded")

    page.click("main >> text=Monitor")
    page.wait_for_url(re.compile(rf"/console/studies/{SLUG}/monitor/$"))
    page.click("main >> text=Exclusions")
    page.wait_for_url(re.compile(rf"/console/studies/{SLUG}/exclusions/$"))
    journey.exclusions_page = [
        " | ".join(c.strip() for c in row.locator("td").all_inner_texts())
        for row in page.locator("section.card:has(h2:text-is('Recorded exclusions')) tr").all()
    ]
    shot("exclusions")
    context.close()

    journey.db = server.query(
        "from oversight.core.models import Exclusion, Participant, Study\n"
        f"s = Study.objects.get(slug={SLUG!r})\n"
        "ps = list(Participant.objects.filter(study=s))\n"
        "result = {'status': s.status, 'manifest_hash': s.manifest_hash,\n"
        "  'conditions': [(c.kind, c.endpoint.name if c.endpoint else None)\n"
        "                 for c in s.conditions.order_by('position')],\n"
        "  'tasks': [(t.bank.name, t.sample_size, t.time_limit_s) for t in s.tasks.all()],\n"
        "  'bank_items': s.tasks.first().bank.items.count(),\n"
        "  'participants': {p.pk: p.status for p in ps},\n"
        "  'exclusions': [dict(participant=e.participant_id, reason=e.reason, rule=e.rule,\n"
        "     by=e.created_by.username, revoked=e.revoked_at) for e in Exclusion.objects.filter(participant__study=s)]}"
    )
    return journey


@pytest.fixture(scope="module")
def journey(browser_server, chromium, artifacts, tmp_path_factory) -> Journey:
    try:
        journey = _journey(browser_server, chromium, artifacts, tmp_path_factory.mktemp("console"))
    except Exception:
        print("--- daphne log (tail)\n" + browser_server.log_tail())
        raise
    m = journey.monitor
    print(
        f"monitor: {len(m)} samples over {m[-1]['t']} s; rows {[s['rows'] for s in m]}; "
        f"updates {m[0]['updates']} → {m[-1]['updates']}; bots rc {journey.bots['rc']} "
        f"in {journey.bots['elapsed_s']} s"
    )
    return journey


def test_the_researcher_uploads_an_mmlu_sample_and_the_job_shows_its_counts(journey):
    summary = " / ".join(journey.job["summary"])
    n = journey.csv_items
    assert n > 0
    assert f"Items: {n:,} in the import: {n:,} new" in summary, summary
    assert f"val {n:,}" in summary and f"{len(SUBJECTS)} subjects" in summary, summary
    assert journey.db["bank_items"] == n


def test_the_study_is_designed_with_both_conditions_and_launched_with_its_manifest_hash(journey):
    assert journey.db["status"] == "live"
    assert journey.db["conditions"] == [["unaided", None], ["assisted", "Simulated assistant"]]
    assert journey.db["tasks"] == [[BANK_NAME, ITEMS_PER_CONDITION, 60]]
    assert re.fullmatch(r"[0-9a-f]{64}", journey.manifest_hash), journey.manifest_hash
    assert journey.manifest_hash == journey.db["manifest_hash"]


def test_launching_asked_for_confirmation_first(journey):
    text = journey.launch_confirmation
    assert "Launching freezes the study" in text and "The design can no longer be edited" in text
    # The conditions as participants get them: the order they were added in, fixed.
    assert "in this order (fixed)" in text
    assert text.index("Unaided (unaided") < text.index("Assisted (assisted")


def test_the_bots_finish_without_errors(journey):
    assert journey.bots["rc"] == 0, journey.bots["log"][-3000:]
    assert f"participants completed: {N_BOTS}/{N_BOTS}" in journey.bots["log"], journey.bots["log"][-3000:]


def test_the_monitor_updates_live_without_a_reload(journey):
    samples = journey.monitor
    first, last = samples[0], samples[-1]
    assert first["rows"] == 0 and last["rows"] == N_BOTS == last["completed"]
    # Rows appeared over time, not all at once (the bots join 5 at a time), and progress moved in between.
    assert len({s["rows"] for s in samples}) >= 3, [s["rows"] for s in samples]
    assert len({s["done"] for s in samples}) >= 4, [s["done"] for s in samples]
    assert last["done"] == N_BOTS * 2 * ITEMS_PER_CONDITION
    assert first["summaryCompleted"] == 0 and last["summaryCompleted"] == N_BOTS  # the summary card is live too
    assert last["updates"] > first["updates"] + 2
    # The same document the whole time (a reload would have dropped the marker) and the socket stayed up.
    assert all(s["marker"] for s in samples[1:]), "the monitor page was reloaded"
    assert all(s["state"] == "Live" for s in samples), {s["state"] for s in samples}
    assert journey.db["participants"] and set(journey.db["participants"].values()) == {"completed"}


def test_the_monitor_batches_its_updates(journey):
    # At most one message a second (+ the connect snapshot and slack for timer drift), however many events.
    samples = journey.monitor
    elapsed = samples[-1]["t"] - samples[0]["t"]
    messages = samples[-1]["updates"] - samples[0]["updates"]
    assert messages <= elapsed + 2, (messages, elapsed)


def test_excluding_from_the_transcript_is_shown_there_and_on_the_exclusions_page(journey):
    t = journey.transcript
    pid = int(re.search(r"/participants/(\d+)/$", t["url"]).group(1))
    assert t["label"] == f"P{pid}" and t["heading"].startswith(f"P{pid}")
    assert t["items"] == 2 * ITEMS_PER_CONDITION
    assert "Included in analysis." in t["before"]
    assert t["after_url"] == t["url"]
    assert any(f"P{pid} is excluded from analysis" in m for m in t["messages"]), t["messages"]
    assert EXCLUDE_REASON in t["after"] and "Include again" in t["after"] and "Included in analysis." not in t["after"]
    assert any(
        row.startswith(f"P{pid} | manual | {EXCLUDE_REASON} | researcher") and row.endswith("active")
        for row in journey.exclusions_page
    ), journey.exclusions_page
    assert journey.db["exclusions"] == [
        {"participant": pid, "reason": EXCLUDE_REASON, "rule": "manual", "by": "researcher", "revoked": None}
    ]


def test_the_console_pages_run_without_script_errors(journey):
    assert not journey.page_errors


def test_screenshots_of_each_step_are_saved(journey):
    for kind in SCREENSHOTS:
        path = journey.screenshots.get(kind)
        assert path is not None and path.exists() and path.stat().st_size > 5_000, kind
