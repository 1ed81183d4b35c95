"""The report in the console: access, blinding, the known numbers of a small study, the toggle, the plots, the cache."""

import html
import re
import xml.etree.ElementTree as ET

import pytest
from django.urls import reverse

from oversight.console import views_report
from oversight.core.models import Collaborator, Participant
from oversight.core.services.exclusions import exclusion_add, exclusion_revoke
from oversight.core.services.participants import participant_join
from oversight.core.services.studies import study_close
from oversight.core.services.trials import Answer, trial_show, trial_submit
from oversight.reports import services as report_services
from tests.analysis.edge_case import TABLE_1_LABELS
from tests.factories import make_study

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_cache")]

SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def study(alice, bob):
    study = make_study(owner=alice, n_items=2)
    Collaborator.objects.create(study=study, user=bob, role=Collaborator.Role.VIEWER)
    return study


def enrol(study, pid, *, pilot=False):
    return participant_join(study=study, params={"pid": pid}, consent=True, is_pilot=pilot)


def answer(participant, *, assisted: bool, unaided: bool, confidence=80):
    """Answer every scored item: right in a condition where the flag is True, else wrong."""
    for trial in participant.trials.select_related("item", "condition").order_by("position"):
        trial_show(trial=trial)
        right = assisted if trial.condition.kind == "assisted" else unaided
        if trial.role != "scored":
            right = True
        choice = trial.item.gold_index if right else (trial.item.gold_index + 1) % 4
        trial_submit(trial=trial, answer=Answer(choice=choice, confidence=confidence))


@pytest.fixture
def known(study, alice):
    """P1 right everywhere; P2 right only when assisted; P3 wrong everywhere and excluded; a pilot right everywhere.

    With exclusions: assisted (100 + 100)/2 = 100.0, unaided (100 + 0)/2 = 50.0.
    Without: assisted (100 + 100 + 0)/3 = 66.7, unaided (100 + 0 + 0)/3 = 33.3.
    """
    p1, p2, p3 = enrol(study, "p1"), enrol(study, "p2"), enrol(study, "p3")
    answer(p1, assisted=True, unaided=True)
    answer(p2, assisted=True, unaided=False, confidence=60)
    answer(p3, assisted=False, unaided=False)
    answer(enrol(study, "pilot", pilot=True), assisted=True, unaided=True)
    exclusion_add(participant=p3, reason="used a search engine", rule="manual", by=alice)
    return {"p1": p1, "p2": p2, "p3": p3}


def url(view, study, **kw):
    return reverse(f"console:{view}", kwargs={"slug": study.slug, **kw})


def row_cells(body: str, label: str) -> list[str]:
    """The text of each cell of the report table's row `label`."""
    table = re.search(r'<table class="table report-table" id="report-table">(.*?)</table>', body, re.S).group(1)
    for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.S):
        head = re.search(r"<th[^>]*>(.*?)</th>", tr, re.S)
        if head and html.unescape(re.sub(r"<[^>]+>", "", head.group(1))).strip() == label:
            return [
                re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", c)).strip()
                for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)
            ]
    raise AssertionError(f"no row {label!r}")


VIEWS = [("report", {}), ("report_items", {}), ("report_plot", {"name": "sandwich"})]  # (view, kwargs)


@pytest.mark.parametrize("view,kw", VIEWS)
def test_it_sends_anonymous_visitors_to_log_in(client, study, view, kw):
    response = client.get(url(view, study, **kw))
    assert response.status_code == 302 and "/console/login/" in response["Location"]


@pytest.mark.parametrize("view,kw", VIEWS)
def test_it_hides_the_study_from_an_outsider(client, study, charlie, view, kw):
    client.force_login(charlie)
    assert client.get(url(view, study, **kw)).status_code == 404


@pytest.mark.parametrize("view,kw", VIEWS)
def test_it_answers_only_get(client, study, alice, view, kw):
    client.force_login(alice)
    assert client.post(url(view, study, **kw)).status_code == 405


def test_an_unknown_plot_is_not_found(client, study, alice):
    client.force_login(alice)
    assert client.get(url("report_plot", study, name="pie")).status_code == 404


def test_the_study_page_links_to_the_report(client, study, alice):
    client.force_login(alice)
    assert url("report", study) in client.get(url("study", study)).content.decode()


def test_the_table_shows_the_known_numbers_with_exclusions_applied(client, study, alice, known):
    client.force_login(alice)
    body = client.get(url("report", study), {"resamples": 0}).content.decode()
    # Columns: accuracy [CI], CE, N (items). Each condition has 2 items; the model rows are absent (no baselines).
    # CE: P1's two answers at 80% all right (|100 − 80| = 20), P2's two at 60% all wrong (|0 − 60| = 60) → 40.
    assert row_cells(body, "Unaided") == ["50.0", "40.0", "2"]
    assert row_cells(body, "Assisted")[0] == "100.0" and row_cells(body, "Assisted")[2] == "2"
    assert row_cells(body, "Assisted vote")[0] == "100.0"
    assert "Model (" not in body.split('id="report-table"')[1].split("</table>")[0]
    assert f"P{known['p3'].pk}" in body  # listed as excluded
    assert "Pilots left out: 1 (" in body
    assert "2 participants, 4 items, 8 answers" in body


def test_the_toggle_shows_the_numbers_without_exclusions(client, study, alice, known):
    client.force_login(alice)
    primary = client.get(url("report", study), {"resamples": 0}).content.decode()
    everyone = client.get(url("report", study), {"resamples": 0, "exclusions": "off"}).content.decode()
    assert row_cells(primary, "Unaided")[0] == "50.0" and row_cells(everyone, "Unaided")[0] == "33.3"
    assert row_cells(primary, "Assisted")[0] == "100.0" and row_cells(everyone, "Assisted")[0] == "66.7"
    assert "3 participants" in everyone
    # The toggle is a pair of plain links (works without JS), and the plots follow the variant.
    assert 'href="/console/studies/unit/report/?exclusions=off&amp;resamples=0"' in primary
    assert "sandwich.svg?exclusions=off&amp;resamples=0" in everyone


def test_the_page_states_the_method_and_the_intervals(client, study, alice, known):
    client.force_login(alice)
    body = client.get(url("report", study)).content.decode()  # the default: 2,000 resamples
    assert "2000 resamples; seed 0" in body and "two-way cluster bootstrap" in body
    assert "Our reading (the paper does not define it)" in body  # the vote's confidence
    assert re.search(r"50\.0</span> <span class=\"ci\">\[0\.0, 100\.0\]", body)  # unaided: a CI from 2 people
    assert "Mean confidence (%)" in body and "Max-confidence vote subset: N items" in body
    assert "Turns per item" in body and "Learning: second − first (pp)" in body


def test_resamples_are_capped(client, study, alice, known, monkeypatch):
    seen = []
    real = report_services.build_bundle
    monkeypatch.setattr(report_services, "build_bundle", lambda s, r: seen.append(r) or real(s, 0))
    client.force_login(alice)
    client.get(url("report", study), {"resamples": 10**9})
    client.get(url("report", study), {"resamples": "many"})
    assert seen == [views_report.MAX_RESAMPLES, 2000]


def test_the_sandwich_gap_and_the_best_other_are_shown(client, study, alice, known):
    client.force_login(alice)
    body = client.get(url("report", study), {"resamples": 0}).content.decode()
    section = body.split('id="report-sandwich"')[1].split("</section>")[0]
    assert "<strong>+50.0</strong> pp" in section and "best other, Unaided, 50.0" in section


def test_the_items_page_lists_each_item_with_its_vote_and_links_to_transcripts(client, study, alice, known):
    client.force_login(alice)
    unaided = study.conditions.get(kind="unaided")
    body = client.get(url("report_items", study), {"resamples": 0, "condition": unaided.pk}).content.decode()
    rows = re.findall(r'<tr data-item="\d+" data-condition="(\d+)">', body)
    assert rows == [str(unaided.pk)] * 2
    p1 = known["p1"]
    trial = p1.trials.filter(condition=unaided, role="scored").order_by("position").first()
    assert f"{url('transcript', study, participant_id=p1.pk)}#item-{trial.position}" in body
    assert f"P{known['p3'].pk}" not in body.split('id="report-items"')[1]  # excluded: not in the primary rows
    everyone = client.get(url("report_items", study), {"resamples": 0, "condition": unaided.pk, "exclusions": "off"})
    assert f"P{known['p3'].pk}" in everyone.content.decode().split('id="report-items"')[1]


def test_the_plots_are_svg_files_and_downloadable(client, study, alice, known):
    client.force_login(alice)
    for name in ("sandwich", "reliability", "confidence", "participants"):
        response = client.get(url("report_plot", study, name=name), {"resamples": 0})
        assert response.status_code == 200 and response["Content-Type"].startswith("image/svg+xml")
        assert "style-src 'unsafe-inline'" in response["Content-Security-Policy"]
        assert "script-src" not in response["Content-Security-Policy"]  # default-src 'none'
        root = ET.fromstring(response.content)
        assert root.tag == f"{SVG_NS}svg"
        assert "Content-Disposition" not in response
    download = client.get(url("report_plot", study, name="sandwich"), {"resamples": 0, "download": 1})
    assert download["Content-Disposition"] == 'attachment; filename="unit-sandwich.svg"'


def test_a_blind_collaborator_sees_no_results_while_the_study_runs(client, study, bob, known):
    Collaborator.objects.filter(user=bob).update(blind=True)
    client.force_login(bob)
    body = client.get(url("report", study), {"resamples": 0}).content.decode()
    assert "Results hidden" in body and "report-table" not in body and "50.0" not in body
    assert "/report/sandwich.svg" not in body and "<img" not in body
    items = client.get(url("report_items", study), {"resamples": 0}).content.decode()
    assert "Results hidden" in items and "data-item=" not in items
    assert client.get(url("report_plot", study, name="sandwich")).status_code == 403
    # Once the study is closed the report opens to them.
    study_close(study=study)
    body = client.get(url("report", study), {"resamples": 0}).content.decode()
    assert "Results hidden" not in body and row_cells(body, "Unaided")[0] == "50.0"


def test_blind_collaborators_by_study_setting_see_no_results_either(client, study, bob, alice, known):
    study.blind_collaborators = True
    study.save(update_fields=["blind_collaborators"])
    client.force_login(bob)
    assert "Results hidden" in client.get(url("report", study)).content.decode()
    client.force_login(alice)  # the owner is never blind
    assert "Results hidden" not in client.get(url("report", study), {"resamples": 0}).content.decode()


def test_a_reload_uses_the_cache_and_new_data_or_exclusions_refresh_it(client, study, alice, known, monkeypatch):
    calls = []
    real = report_services.build_bundle
    monkeypatch.setattr(report_services, "build_bundle", lambda s, r: calls.append(r) or real(s, r))
    client.force_login(alice)
    client.get(url("report", study), {"resamples": 0})
    client.get(url("report", study), {"resamples": 0})
    client.get(url("report_plot", study, name="sandwich"), {"resamples": 0})
    assert len(calls) == 1
    exclusion_revoke(exclusion=known["p3"].exclusions.get(), by=alice)
    body = client.get(url("report", study), {"resamples": 0}).content.decode()
    assert len(calls) == 2 and row_cells(body, "Unaided")[0] == "33.3"
    answer(enrol(study, "p4"), assisted=True, unaided=True)
    body = client.get(url("report", study), {"resamples": 0}).content.decode()
    assert len(calls) == 3 and row_cells(body, "Unaided")[0] == "50.0"  # (100 + 0 + 0 + 100)/4


def test_an_empty_study_renders_without_numbers(client, study, alice):
    client.force_login(alice)
    body = client.get(url("report", study), {"resamples": 0}).content.decode()
    assert "No analysed answers yet." in body
    response = client.get(url("report_plot", study, name="participants"), {"resamples": 0})
    assert response.status_code == 200 and b"No analysed answers yet" in response.content
    assert Participant.objects.count() == 0


def test_the_console_table_has_the_json_reports_rows_with_the_model_on_its_split_and_the_experts(
    client, study, alice, known
):
    from oversight.banks.models import Bank
    from oversight.baselines.runner import create_run, execute

    bank = study.tasks.get(role="scored").bank
    Bank.objects.filter(pk=bank.pk).update(format=Bank.Format.MMLU)
    execute(
        create_run(
            endpoint=study.conditions.get(kind="assisted").endpoint, bank=bank, split="val", method="zero-shot"
        ).pk
    )
    client.force_login(alice)
    body = client.get(url("report", study), {"resamples": 0}).content.decode()
    data = report_services.report_bundle(study=study, resamples=0)["report"]["with_exclusions"]
    labels = [r["label"] for r in data["table"]["rows"]]
    assert labels == TABLE_1_LABELS
    for label in labels:
        row_cells(body, label)  # every row of the JSON is on the page
    split = row_cells(body, "Model (zero-shot) on its split")
    assert split[2] == f"{bank.items.count()} (val)"  # N: the whole split, named
    assert row_cells(body, "Expert human (published)") == ["90.0 reference", "–", "–"]
    assert "Empty timeouts" in body and "Tie rule" in body
