"""The live monitor's read side: one row per participant and the study's summary, as the page shows them.

Services announce *which* participant changed (core.services.monitor); the page renders the rows server-side
(it works without JS) and its socket (console.consumers) re-reads the changed rows and pushes them rendered by
the page's own template partials, so the browser shows the same markup either way.
"""

from collections import defaultdict
from datetime import timedelta

from django.db.models import Count, Max, Q
from django.template.loader import render_to_string
from django.utils import timezone

from oversight.assistant.models import ChatMessage
from oversight.core.models import Condition, Participant, Study, Transcript, Trial
from oversight.core.protocols import ProtocolSettingsError

IDLE_AFTER = timedelta(minutes=3)  # active but silent this long: flagged as possibly stuck or abandoned
TEMPLATE = "console/monitor.html"


def monitor_rows(study: Study, *, participant_ids=None, blind: bool = False, now=None) -> list[dict]:
    """One row per participant: status, where they are, time left, chat activity, accuracy so far. People only:
    a model judge's progress is its judge run's (console's model-judges page), and its trials would swell the
    counts a researcher watches to decide when the study is full."""
    now = now or timezone.now()
    participants = Participant.objects.filter(study=study, kind=Participant.Kind.HUMAN).order_by("pk")
    if participant_ids is not None:
        participants = participants.filter(pk__in=list(participant_ids))
    participants = list(participants.annotate(last_event=Max("events__at")))
    ids = [p.pk for p in participants]
    conditions = {c.pk: c for c in study.conditions.all()}

    trials = defaultdict(list)
    for t in Trial.objects.filter(participant_id__in=ids).values(
        "participant_id", "position", "status", "deadline_at", "condition_id", "correct", "role", "transcript_id"
    ):
        trials[t["participant_id"]].append(t)
    debates = _debates_now_on(trials, conditions)

    chat = {
        row["trial__participant_id"]: row
        for row in ChatMessage.objects.filter(trial__participant_id__in=ids)
        .values("trial__participant_id")
        .annotate(
            messages=Count("id", filter=Q(role=ChatMessage.Role.USER)),
            generating=Count("id", filter=Q(status=ChatMessage.Status.STREAMING)),
        )
    }

    rows = []
    final = {Trial.Status.ANSWERED, Trial.Status.TIMED_OUT}
    for p in participants:
        mine = sorted(trials[p.pk], key=lambda t: t["position"])
        current = next((t for t in mine if t["status"] not in final), None)
        accuracy = {}
        if not blind:
            for cid, condition in conditions.items():
                scored = [
                    t for t in mine if t["condition_id"] == cid and t["role"] == "scored" and t["status"] in final
                ]
                if scored:
                    accuracy[condition.name] = round(sum(bool(t["correct"]) for t in scored) / len(scored), 3)
        activity = p.last_event or p.created_at
        idle = p.status == Participant.Status.ACTIVE and now - activity > IDLE_AFTER
        rows.append(
            {
                "id": p.pk,
                "label": f"P{p.pk}",
                "pilot": p.is_pilot,
                "status": p.status,
                "status_label": p.get_status_display(),
                "done": sum(t["status"] in final for t in mine),
                "total": len(mine),
                "item": None if current is None else current["position"] + 1,
                "condition": None if current is None else getattr(conditions.get(current["condition_id"]), "name", ""),
                "round": None if current is None else debates.get(current["transcript_id"]),
                "deadline": current["deadline_at"].isoformat() if current and current["deadline_at"] else None,
                "generating": bool(chat.get(p.pk, {}).get("generating")),
                "messages": chat.get(p.pk, {}).get("messages", 0),
                "accuracy": accuracy,
                "last_activity": activity.isoformat(),
                "idle": idle,
            }
        )
    return rows


def _debates_now_on(trials: dict, conditions: dict) -> dict[int, str]:
    """Where each judge's live transcript is, for the trial they are on: "round 2 of 3", "debate over"."""
    final = {Trial.Status.ANSWERED, Trial.Status.TIMED_OUT}
    ids = [
        t["transcript_id"] for rows in trials.values() for t in rows if t["transcript_id"] and t["status"] not in final
    ]
    where = {}
    for t in Transcript.objects.filter(pk__in=ids, shared=False).values("pk", "condition_id", "rounds_done", "status"):
        try:
            rounds = conditions[t["condition_id"]].protocol_settings().rounds
        except (KeyError, ProtocolSettingsError):
            continue
        if t["status"] in {Transcript.Status.COMPLETE, Transcript.Status.FAILED}:
            where[t["pk"]] = f"over after {t['rounds_done']} of {rounds} rounds"
        else:
            where[t["pk"]] = f"round {min(t['rounds_done'] + 1, rounds)} of {rounds}"
    return where


def monitor_summary(study: Study, *, blind: bool = False) -> dict:
    """Counts by status and accuracy so far per condition (pilots left out, as in analysis)."""
    by_status = dict(
        Participant.objects.filter(study=study, is_pilot=False, kind=Participant.Kind.HUMAN)
        .values("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    summary = {"by_status": {label: by_status.get(value, 0) for value, label in Participant.Status.choices}}
    if not blind:
        accuracy = {}
        for condition in study.conditions.all():
            scored = Trial.objects.filter(
                condition=condition,
                role="scored",
                participant__is_pilot=False,
                participant__kind=Participant.Kind.HUMAN,
                status__in=[Trial.Status.ANSWERED, Trial.Status.TIMED_OUT],
            ).aggregate(n=Count("id"), right=Count("id", filter=Q(correct=True)))
            accuracy[condition.name] = {
                "n": scored["n"],
                "accuracy": round(scored["right"] / scored["n"], 3) if scored["n"] else None,
            }
        summary["accuracy"] = accuracy
    return summary


def condition_names(study: Study) -> list[str]:
    return list(Condition.objects.filter(study=study).order_by("position").values_list("name", flat=True))


def monitor_data(study: Study, *, blind: bool, participant_ids=None) -> dict:
    """What the monitor page's partials render: all rows, or only those of `participant_ids`, and the summary."""
    return {
        "study": study,
        "blind": blind,
        "summary": monitor_summary(study, blind=blind),
        "rows": monitor_rows(study, participant_ids=participant_ids, blind=blind),
    }


def monitor_html(data: dict) -> dict:
    """`monitor_data` rendered by the page's own partials (no database access: safe off the database thread)."""
    return {
        "rows": render_to_string(f"{TEMPLATE}#rows", data),
        "summary": render_to_string(f"{TEMPLATE}#summary", data),
    }
