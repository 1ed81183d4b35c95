"""The sandwich report in the console: the paper-style table, the key metrics, the plots, per-item drill-down.

The report and its plots come from `oversight.reports.services` (computed on request, cached until the data
changes); these views choose the variant and the number of resamples and format the numbers for the page.
docs/report.md explains the page.

Blinding: a viewer who is blind to accuracy (`viewer_is_blind`) sees no result — no table, metric, plot or
per-item number — until the study is closed. Once the study is closed the report is open to every collaborator.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from oversight.analysis import plots
from oversight.analysis.report import DEFAULT_RESAMPLES, METHOD_KEYS
from oversight.console.access import get_study_for_user, results_hidden
from oversight.core.models import Study
from oversight.reports.services import report_bundle, report_plot_svg

MAX_RESAMPLES = 10_000
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_PARTICIPANT_LINKS = 40  # per item on the items page
# On the page: the headline sandwich and the per-task confidence bars across the page, the two others side by side.
PLOT_ORDER = ("sandwich", "reliability", "participants", "confidence")
FULL_WIDTH_PLOTS = {"sandwich", "confidence"}
# The plot files keep their own inline styles (matplotlib); they run no script and load nothing.
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


# --- Parameters, blinding ----------------------------------------------------------------------------------


def _params(request: HttpRequest) -> tuple[str, int]:
    """(variant, resamples) from `?exclusions=off` and `?resamples=N` (0 to MAX_RESAMPLES)."""
    variant = "without_exclusions" if request.GET.get("exclusions") == "off" else "with_exclusions"
    try:
        resamples = int(request.GET.get("resamples", DEFAULT_RESAMPLES))
    except ValueError:
        resamples = DEFAULT_RESAMPLES
    return variant, min(max(resamples, 0), MAX_RESAMPLES)


def _query(variant: str, resamples: int, **extra) -> str:
    params = {}
    if variant == "without_exclusions":
        params["exclusions"] = "off"
    if resamples != DEFAULT_RESAMPLES:
        params["resamples"] = resamples
    params.update({k: v for k, v in extra.items() if v not in (None, "")})
    return f"?{urlencode(params)}" if params else ""


# --- Formatting ---------------------------------------------------------------------------------------------


def _num(value, digits: int = 1, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _ci(e: dict | None, sign: bool = False) -> str:
    if not e or not e.get("ci95"):
        return ""
    lo, hi = e["ci95"]
    return f"[{_num(lo, sign=sign)}, {_num(hi, sign=sign)}]"


def _value(e: dict | None, sign: bool = False) -> str:
    return _num(e["value"], sign=sign) if e else "–"


def _p(value) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _letter(index) -> str:
    return LETTERS[index] if index is not None and 0 <= index < len(LETTERS) else "–"


def _table(analysis: dict, items_base: str, variant: str, resamples: int) -> dict:
    columns = analysis["table"]["columns"]
    rows = []
    for row in analysis["table"]["rows"]:
        cells = []
        for column in columns:
            cell = row["cells"].get(column)
            if cell is None:
                cells.append(None)
                continue
            n = "–" if cell["n_items"] is None else str(cell["n_items"])
            cells.append(
                {
                    "value": _value(cell["accuracy"]),
                    # A published reference has no interval: say what it is instead.
                    "ci": "reference" if row["reference"] else _ci(cell["accuracy"]),
                    "ce": _value(cell["ce"]),
                    "n": f"{n} ({cell['split'] or 'all'})" if row["kind"] == "model_split" else n,
                    "n_participants": cell["n_participants"],
                    "n_answers": cell["n_answers"],
                }
            )
        link = None if row["reference"] else items_base + _query(variant, resamples, condition=row["condition_id"])
        rows.append(
            {
                "label": row["label"],
                "kind": row["kind"],
                "key": row["key"],
                "cells": cells,
                "link": link,
                "source": row.get("source", ""),
            }
        )
    return {"columns": columns, "rows": rows}


def _metric_rows(analysis: dict, tie_rule: str) -> tuple[list[str], list[dict]]:
    """The key metrics per condition (all tasks), as (condition labels, rows of formatted values)."""
    labels = {r["condition_id"]: r["label"] for r in plots.human_rows(analysis)}
    blocks = {c["id"]: c for c in analysis["conditions"]}
    order = [cid for cid in labels if cid in blocks]
    tasks = analysis["tasks"]

    def est(e, sign=False):
        return {"value": _value(e, sign=sign), "ci": _ci(e, sign=sign)}

    def plain(text):
        return {"value": text, "ci": ""}

    def row(label, fn, group=""):
        return {"label": label, "group": group, "values": [fn(blocks[cid]) for cid in order]}

    def dialogue(key, digits=1, suffix=""):
        def get(b):
            v = b["all"]["dialogue"][key]
            return plain("–" if v is None else f"{v:.{digits}f}{suffix}")

        return get

    rows = [
        row(
            "Participants × items (answers)",
            lambda b: plain(f"{b['all']['n_participants']} × {b['all']['n_items']} ({b['all']['n_answers']})"),
        ),
        row("Accuracy (%)", lambda b: est(b["all"]["accuracy"])),
        row("Pooled accuracy, for contrast (%)", lambda b: plain(_num(b["all"]["pooled_accuracy"]))),
        row("Mean confidence (%)", lambda b: est(b["all"]["mean_confidence"]), "Confidence"),
    ]
    if len(tasks) > 1:
        for task in tasks:
            rows.append(
                row(
                    f"Mean confidence, {task} (%)",
                    lambda b, task=task: (
                        est(b["by_task"][task]["mean_confidence"]) if task in b["by_task"] else plain("–")
                    ),
                    "Confidence",
                )
            )
    rows += [
        row("Calibration error (pp)", lambda b: est(b["all"]["calibration"]["ce"]), "Confidence"),
        row("Vote accuracy (%)", lambda b: est(b["all"]["vote"]["accuracy"]), "Vote"),
        row("Vote mean confidence (%)", lambda b: plain(_num(b["all"]["vote"]["mean_confidence"])), "Vote"),
        row(
            "Max-confidence vote subset: accuracy (%)",
            lambda b: est(b["all"]["vote"]["max_confidence"]["accuracy"]),
            "Vote",
        ),
        row(
            "Max-confidence vote subset: N items",
            lambda b: plain(str(b["all"]["vote"]["max_confidence"]["n_items"])),
            "Vote",
        ),
        row(
            "Items without a vote (nobody selected an option; counted wrong)",
            lambda b: plain(str(b["all"]["vote"]["n_no_opinion"])),
            "Vote",
        ),
        row(
            f"Vote ties (by plurality / by the {tie_rule.replace('_', ' ')} rule)",
            lambda b: plain(f"{b['all']['vote']['ties']['plurality']} / {b['all']['vote']['ties']['by_rule']}"),
            "Vote",
        ),
        row("Learning: first half (%)", lambda b: est(b["learning"]["first_half"]), "Learning"),
        row("Learning: second half (%)", lambda b: est(b["learning"]["second_half"]), "Learning"),
        row("Learning: second − first (pp)", lambda b: est(b["learning"]["difference"], sign=True), "Learning"),
        row(
            "Learning: participants with both halves", lambda b: plain(str(b["learning"]["n_participants"])), "Learning"
        ),
        row(
            "Learning: improved / unchanged / declined (participants)",
            lambda b: plain(
                f"{b['learning']['n_improved']} / {b['learning']['n_unchanged']} / {b['learning']['n_declined']}"
            ),
            "Learning",
        ),
        row("Turns per item", dialogue("turns_per_item"), "Dialogue"),
        row("Resets per item", dialogue("resets_per_item", 2), "Dialogue"),
        row("Seconds per item: mean", dialogue("seconds_per_item_mean", 0), "Dialogue"),
        row("Seconds per item: median", dialogue("seconds_per_item_median", 0), "Dialogue"),
        row("Quotes per item", dialogue("quotes_per_item", 2), "Dialogue"),
        row("Items with a quote (%)", dialogue("items_with_quotes_share", 0), "Dialogue"),
        row("Quotes verified (%)", dialogue("quotes_verified_share", 0), "Dialogue"),
        row("Timed out (%)", dialogue("timed_out_share", 0), "Dialogue"),
        row(
            "Submitted: manual / auto / server",
            lambda b: plain(
                " / ".join(str(b["all"]["dialogue"]["submit_kinds"].get(k, 0)) for k in ("manual", "auto", "server"))
            ),
            "Dialogue",
        ),
    ]
    return [labels[cid] for cid in order], rows


def _sandwich(analysis: dict) -> list[dict]:
    labels = {b["key"]: b["label"] for b in analysis["baselines"]}
    out = []
    for pair in analysis["sandwich"]:
        scopes = list(pair["by_task"].items())
        if len(scopes) != 1:
            scopes = [("All tasks", pair["all"]), *scopes]
        for name, s in scopes:
            models = []
            for key, m in s["models"].items():
                test = s["paired_tests"].get(key, {})
                individual, vote = test.get("individual") or {}, test.get("vote") or {}
                gap = s["gaps"]["assisted_minus_model"].get(key)
                models.append(
                    {
                        "label": labels.get(key, key),
                        "accuracy": _value(m["accuracy"]),
                        "ci": _ci(m["accuracy"]),
                        "gap": _value(gap, sign=True),
                        "gap_ci": _ci(gap, sign=True),
                        "p": _p(individual.get("p_value")),
                        "p_items": individual.get("n_items"),
                        "p_exact": individual.get("exact"),
                        "vote_p": _p(vote.get("p_value")),
                    }
                )
            best = s["best_other"]
            gap_best = s["gaps"]["assisted_minus_best_other"]
            gap_unaided = s["gaps"]["assisted_minus_unaided"]
            out.append(
                {
                    "scope": name,
                    "assisted_name": pair["assisted"]["name"],
                    "unaided_name": pair["unaided"]["name"],
                    "assisted": _value(s["assisted"]),
                    "assisted_ci": _ci(s["assisted"]),
                    "n_assisted": s["n_items_assisted"],
                    "n_unaided": s["n_items_unaided"],
                    "unaided": _value(s["unaided"]),
                    "unaided_ci": _ci(s["unaided"]),
                    "same_items": s["same_items"],
                    "best_label": best["label"] if best else None,
                    "best": _value(best["accuracy"]) if best else "–",
                    "best_ci": _ci(best["accuracy"]) if best else "",
                    "gap": _value(gap_best, sign=True),
                    "gap_ci": _ci(gap_best, sign=True),
                    "gap_unaided": _value(gap_unaided, sign=True),
                    "gap_unaided_ci": _ci(gap_unaided, sign=True),
                    "models": models,
                }
            )
    return out


def _participant_rows(analysis: dict, people: list[dict], study: Study, excluded: set[int]) -> tuple[list, list]:
    human = plots.human_rows(analysis)
    rows = []
    for person in people:
        pid = person["participant_id"]
        cells = []
        for r in human:
            cid = r["condition_id"]
            acc = person["accuracy"].get(cid)
            cells.append("–" if acc is None else f"{acc:.0f}% ({person['n'][cid]})")
        rows.append(
            {
                "id": pid,
                "excluded": pid in excluded,
                "cells": cells,
                "url": reverse("console:transcript", kwargs={"slug": study.slug, "participant_id": pid}),
            }
        )
    return [r["label"] for r in human], rows


# --- Views --------------------------------------------------------------------------------------------------


@login_required
@require_GET
def report(request: HttpRequest, slug: str) -> HttpResponse:
    """The report page: the table, the key metrics, the sandwich, the plots, the method; `?exclusions=off`."""
    study = get_study_for_user(request.user, slug)
    variant, resamples = _params(request)
    context = {
        "study": study,
        "variant": variant,
        "resamples": resamples,
        "max_resamples": MAX_RESAMPLES,
        "default_resamples": DEFAULT_RESAMPLES,
        "hidden": results_hidden(request.user, study),
    }
    if context["hidden"]:
        return render(request, "console/report.html", context)

    bundle = report_bundle(study=study, resamples=resamples)
    data = bundle["report"]
    analysis = data[variant]
    base = reverse("console:report", kwargs={"slug": slug})
    items_base = reverse("console:report_items", kwargs={"slug": slug})
    items_url = items_base + _query(variant, resamples)
    excluded = set(data["participants"]["excluded"])
    condition_labels, metric_rows = _metric_rows(analysis, data["method"]["tie_rule"])
    participant_columns, participant_rows = _participant_rows(
        analysis, bundle["participants"][variant], study, excluded
    )
    query = _query(variant, resamples)
    context.update(
        {
            "report": data,
            "analysis": analysis,
            "same_variants": data["with_exclusions"] == data["without_exclusions"],
            "with_url": base + _query("with_exclusions", resamples),
            "without_url": base + _query("without_exclusions", resamples),
            "items_url": items_url,
            "table": _table(analysis, items_base, variant, resamples),
            "condition_labels": condition_labels,
            "metric_rows": metric_rows,
            "sandwich": _sandwich(analysis),
            "participant_columns": participant_columns,
            "participant_rows": participant_rows,
            "excluded": [
                {"id": pid, "url": reverse("console:transcript", kwargs={"slug": slug, "participant_id": pid})}
                for pid in data["participants"]["excluded"]
            ],
            "screened": data["participants"]["screened_out_not_excluded"],
            "experts": bundle["experts"],
            "plots": [
                {
                    "name": name,
                    "title": plots.PLOTS[name],
                    "full": name in FULL_WIDTH_PLOTS,
                    "src": reverse("console:report_plot", kwargs={"slug": slug, "name": name}) + query,
                    "download": reverse("console:report_plot", kwargs={"slug": slug, "name": name})
                    + _query(variant, resamples, download=1),
                }
                for name in PLOT_ORDER + (("persuasion",) if data.get("persuasion", {}).get("configurations") else ())
            ],
            "method": [(key.replace("_", " ").capitalize(), data["method"][key]) for key in METHOD_KEYS],
            "bootstrap": data["method"]["bootstrap"],
        }
    )
    return render(request, "console/report.html", context)


@login_required
@require_GET
def report_plot(request: HttpRequest, slug: str, name: str) -> HttpResponse:
    """One plot as an SVG file (`?download=1`: as an attachment), for the same variant and resamples as the page."""
    study = get_study_for_user(request.user, slug)
    if name not in plots.PLOTS:
        raise Http404("No such plot")
    if results_hidden(request.user, study):
        raise PermissionDenied("You are blind to accuracy while the study runs")
    variant, resamples = _params(request)
    svg = report_plot_svg(study=study, name=name, variant=variant, resamples=resamples)
    response = HttpResponse(svg, content_type="image/svg+xml; charset=utf-8")
    response["Content-Security-Policy"] = SVG_CSP
    response["Cache-Control"] = "private, no-cache"
    if request.GET.get("download"):
        suffix = "-without-exclusions" if variant == "without_exclusions" else ""
        response["Content-Disposition"] = f'attachment; filename="{study.slug}-{name}{suffix}.svg"'
    return response


@login_required
@require_GET
def report_items(request: HttpRequest, slug: str) -> HttpResponse:
    """Per item: answers, share right, the vote, the gold, the models' answers, links to the transcripts."""
    study = get_study_for_user(request.user, slug)
    variant, resamples = _params(request)
    context = {
        "study": study,
        "variant": variant,
        "resamples": resamples,
        "hidden": results_hidden(request.user, study),
    }
    if context["hidden"]:
        return render(request, "console/report.html", {**context, "items_page": True})
    bundle = report_bundle(study=study, resamples=resamples)
    analysis = bundle["report"][variant]
    model_keys = [b["key"] for b in analysis["baselines"]]
    model_labels = [b["label"] for b in analysis["baselines"]]
    try:
        only = int(request.GET.get("condition", ""))
    except ValueError:
        only = None
    excluded = set(bundle["report"]["participants"]["excluded"])
    rows = []
    for r in bundle["items"][variant]:
        if only is not None and r["condition_id"] != only:
            continue
        vote = r["vote"]
        answers = r["answers"]
        rows.append(
            {
                **r,
                "gold_letter": _letter(r["gold"]),
                "accuracy_text": f"{r['accuracy']:.0f}",
                "vote_text": "no vote" if vote is None else f"{_letter(vote['choice'])} ({vote['confidence']:.0f}%)",
                "vote_correct": vote["correct"] if vote else False,  # no vote: counted wrong
                "model_cells": [
                    {"text": _letter(r["models"][k]["predicted"]), "correct": r["models"][k]["correct"]}
                    if k in r["models"]
                    else None
                    for k in model_keys
                ],
                "links": [
                    {
                        "id": pid,
                        "correct": correct,
                        "excluded": pid in excluded,
                        "url": reverse("console:transcript", kwargs={"slug": slug, "participant_id": pid})
                        + (f"#item-{position}" if position is not None else ""),
                    }
                    for pid, position, correct in answers[:MAX_PARTICIPANT_LINKS]
                ],
                "more": max(len(answers) - MAX_PARTICIPANT_LINKS, 0),
            }
        )
    conditions = [{"id": c["id"], "name": c["name"]} for c in analysis["conditions"]]
    base = reverse("console:report_items", kwargs={"slug": slug})
    context.update(
        {
            "items_page": True,
            "rows": rows,
            "model_labels": model_labels,
            "conditions": conditions,
            "only": only,
            "report_url": reverse("console:report", kwargs={"slug": slug}) + _query(variant, resamples),
            "all_url": base + _query(variant, resamples),
            "condition_urls": [
                {"id": c["id"], "name": c["name"], "url": base + _query(variant, resamples, condition=c["id"])}
                for c in conditions
            ],
            "with_url": base + _query("with_exclusions", resamples, condition=only),
            "without_url": base + _query("without_exclusions", resamples, condition=only),
        }
    )
    return render(request, "console/report.html", context)
