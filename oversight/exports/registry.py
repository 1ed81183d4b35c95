"""The exporter registry: one small class per exported table.

Each exporter names the columns it yields (`fields`, in order; their types and meanings come from the data
dictionary), counts its rows, and streams them from the database as tuples with `.values_list(...).iterator()`,
so no table is ever held in memory. Which participants count is decided once, in `ExportContext`: pilots are
left out unless the export includes them, and every participant-level table follows that.

What is never exported: participant tokens (the only credential a participant has), completion and screen-out
codes, chat `client_id`s, endpoint tokens, the researchers' user names — and, unless the researcher asks for them
on a study that allows it, the recruitment platform's ids (`participants.external_id`, and the recruitment
parameters a `joined` event records).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property

from django.db.models import Exists, OuterRef, Q, QuerySet, TextField
from django.db.models.functions import Cast

from oversight.assistant.models import ChatMessage, TranscriptTurn
from oversight.banks.models import Item, Passage
from oversight.baselines.models import BaselineResult, BaselineRun
from oversight.core.models import (
    Condition,
    ConditionItem,
    Event,
    Exclusion,
    Participant,
    Study,
    Task,
    Transcript,
    Trial,
)
from oversight.core.protocols import ProtocolSettings, is_protocol
from oversight.core.services.participants import RECRUITMENT_KEYS
from oversight.exports import dictionary
from oversight.exports.dictionary import Column
from oversight.exports.writers import RawJSON

CHUNK_SIZE = 2000  # rows per database fetch (a server-side cursor on PostgreSQL, fetchmany on SQLite)

# The last columns of a generated text's model record (assistant.models.ModelRecord): chat replies and transcript turns.
MODEL_RECORD = (
    "prompt_tokens",
    "completion_tokens",
    "ttft_ms",
    "total_ms",
    "finish_reason",
    "error_kind",
    "error",
    "quotes",
    "created_at",
    "finished_at",
)

# The recruitment parameters (PROLIFIC_PID, SESSION_ID, workerId, …) that `joined` events store.
RECRUITMENT_PARAMS = frozenset(key for keys in RECRUITMENT_KEYS.values() for key in keys)


def pid(participant_pk: int) -> str:
    return f"P{participant_pk}"


@dataclass
class ExportContext:
    study: Study
    include_pilots: bool = False
    include_external_ids: bool = False
    chunk_size: int = CHUNK_SIZE

    def participant_filter(self, prefix: str = "") -> Q:
        """The exported participants, as a filter on a model that reaches Participant through `prefix`."""
        q = Q(**{f"{prefix}study": self.study})
        if not self.include_pilots:
            q &= Q(**{f"{prefix}is_pilot": False})
        return q

    def study_items(self, field_name: str = "pk") -> Q:
        """The study's items (its frozen samples, and anything its trials show), as a filter on `field_name`."""
        sampled = ConditionItem.objects.filter(study=self.study).values("item_id")
        shown = Trial.objects.filter(participant__study=self.study).values("item_id")
        return Q(**{f"{field_name}__in": sampled}) | Q(**{f"{field_name}__in": shown})


class Exporter:
    identifier = ""
    fields: tuple[str, ...] = ()
    # At most this many rows per written batch (a Parquet row group); None: the export's batch size. Tables with
    # long texts use smaller batches so that one batch in memory stays small (bench/export_messages.py).
    batch_rows: int | None = None

    def __init__(self, ctx: ExportContext) -> None:
        self.ctx = ctx
        self.study = ctx.study

    @property
    def table(self) -> dictionary.Table:
        return dictionary.table(self.identifier)

    @cached_property
    def columns(self) -> tuple[Column, ...]:
        """The written columns: the dictionary's definitions of `fields`, external ids only when exported."""
        columns = [self.table.column(name) for name in self.fields]
        return tuple(c for c in columns if self.ctx.include_external_ids or not c.external_id)

    def queryset(self) -> QuerySet:
        raise NotImplementedError

    def count(self) -> int:
        return self.queryset().count()

    def rows(self) -> Iterator[tuple]:
        raise NotImplementedError

    def written_rows(self) -> Iterator[tuple]:
        """`rows()` cut to `columns` (leaves out the external-id columns when they are not exported)."""
        if len(self.columns) == len(self.fields):
            yield from self.rows()
            return
        keep = [i for i, name in enumerate(self.fields) if name in {c.name for c in self.columns}]
        for row in self.rows():
            yield tuple(row[i] for i in keep)

    def stream(self, qs: QuerySet, *values: str, raw_json: tuple[str, ...] = ()) -> Iterator[tuple]:
        """Rows of `values` from the database, a chunk at a time. The JSON fields named in `raw_json` come as
        their stored text (RawJSON), not decoded: the writers put that text in the files as it is."""
        if raw_json:
            qs = qs.annotate(**{f"{name}_text": Cast(name, output_field=TextField()) for name in raw_json})
            positions = [i for i, v in enumerate(values) if v in raw_json]
            values = tuple(f"{v}_text" if v in raw_json else v for v in values)
            for row in qs.values_list(*values).iterator(chunk_size=self.ctx.chunk_size):
                row = list(row)
                for i in positions:
                    if row[i] is not None:
                        row[i] = RawJSON(row[i])
                yield tuple(row)
            return
        yield from qs.values_list(*values).iterator(chunk_size=self.ctx.chunk_size)


registry: dict[str, type[Exporter]] = {}


def register(cls: type[Exporter]) -> type[Exporter]:
    if cls.identifier not in dictionary.BY_NAME:
        raise LookupError(f"exporter {cls.identifier!r} has no table in the data dictionary")
    registry[cls.identifier] = cls
    return cls


def exporters(ctx: ExportContext) -> list[Exporter]:
    """Every registered exporter for this export, in the data dictionary's table order."""
    order = [t.name for t in dictionary.TABLES]
    return [registry[name](ctx) for name in order if name in registry]


@register
class ParticipantsExporter(Exporter):
    identifier = "participants"
    fields = (
        "participant_id",
        "kind",
        "model",
        "status",
        "is_pilot",
        "excluded",
        "recruitment_source",
        "condition_order",
        "order_seed",
        "joined_at",
        "consented_at",
        "completed_at",
        "last_seen_at",
        "external_id",
    )

    def queryset(self):
        return Participant.objects.filter(self.ctx.participant_filter())

    def rows(self):
        active = Exclusion.objects.filter(participant=OuterRef("pk"), revoked_at__isnull=True)
        qs = self.queryset().annotate(excluded=Exists(active)).order_by("pk")
        for (
            pk,
            kind,
            model,
            status,
            is_pilot,
            excluded,
            recruitment,
            order,
            seed,
            created,
            consented,
            completed,
            seen,
            external_id,
        ) in self.stream(
            qs,
            "pk",
            "kind",
            "model",
            "status",
            "is_pilot",
            "excluded",
            "recruitment",
            "condition_order",
            "order_seed",
            "created_at",
            "consented_at",
            "completed_at",
            "last_seen_at",
            "external_id",
        ):
            source = (recruitment or {}).get("source", "") if isinstance(recruitment, dict) else ""
            yield (
                pid(pk),
                kind,
                model or {},
                status,
                is_pilot,
                excluded,
                source,
                list(order or []),
                seed,
                created,
                consented,
                completed,
                seen,
                external_id,
            )


@register
class ConditionsExporter(Exporter):
    identifier = "conditions"
    fields = (
        "condition_id",
        "name",
        "kind",
        "position",
        "endpoint",
        "model_label",
        "inject_passage",
        "send_question",
        "max_turns",
        "max_message_chars",
        "protocol",
    )

    def queryset(self):
        return Condition.objects.filter(study=self.study).order_by("position", "pk")

    def rows(self):
        for row in self.stream(
            self.queryset(),
            "pk",
            "name",
            "kind",
            "position",
            "endpoint__name",
            "endpoint__model_label",
            "inject_passage",
            "send_question",
            "max_turns",
            "max_message_chars",
            "protocol",
        ):
            # A protocol's settings as the manifest freezes them: every default filled in.
            protocol = ProtocolSettings.for_kind(row[2], row[10]).as_dict() if is_protocol(row[2]) else {}
            yield row[:4] + (row[4] or "", row[5] or "") + row[6:10] + (protocol,)


@register
class TasksExporter(Exporter):
    identifier = "tasks"
    fields = ("task_id", "name", "role", "position", "bank", "sample_size", "time_limit_s", "difficult_only")

    def queryset(self):
        return Task.objects.filter(study=self.study).order_by("position", "pk")

    def rows(self):
        return self.stream(
            self.queryset(),
            "pk",
            "name",
            "role",
            "position",
            "bank__name",
            "sample_size",
            "time_limit_s",
            "difficult_only",
        )


@register
class ItemsExporter(Exporter):
    identifier = "items"
    fields = (
        "item_id",
        "bank",
        "external_id",
        "subject",
        "split",
        "text",
        "options",
        "n_options",
        "gold_index",
        "difficult",
        "passage_id",
        "content_hash",
    )

    def queryset(self):
        return Item.objects.filter(self.ctx.study_items()).order_by("pk")

    def rows(self):
        for (
            pk,
            bank,
            external_id,
            subject,
            split,
            text,
            options,
            gold,
            difficult,
            passage_id,
            content_hash,
        ) in self.stream(
            self.queryset(),
            "pk",
            "bank__name",
            "external_id",
            "subject",
            "split",
            "text",
            "options",
            "gold_index",
            "difficult",
            "passage_id",
            "content_hash",
        ):
            options = [str(o) for o in options or []]
            yield (
                pk,
                bank,
                external_id,
                subject,
                split,
                text,
                options,
                len(options),
                gold,
                difficult,
                passage_id,
                content_hash,
            )


@register
class PassagesExporter(Exporter):
    identifier = "passages"
    batch_rows = 200  # whole articles (QuALITY: ~30 kB each)
    fields = ("passage_id", "bank", "external_id", "title", "author", "text", "content_hash")

    def queryset(self):
        items = Item.objects.filter(self.ctx.study_items()).values("passage_id")
        return Passage.objects.filter(pk__in=items).order_by("pk")

    def rows(self):
        return self.stream(
            self.queryset(), "pk", "bank__name", "external_id", "title", "author", "text", "content_hash"
        )


@register
class TrialsExporter(Exporter):
    identifier = "trials"
    fields = (
        "trial_id",
        "participant_id",
        "participant_kind",
        "condition_id",
        "condition_kind",
        "condition_name",
        "task",
        "item_id",
        "role",
        "position",
        "time_limit_s",
        "status",
        "shown_at",
        "deadline_at",
        "submitted_at",
        "submit_kind",
        "seconds_used",
        "selected_choice",
        "selected_confidence",
        "choice",
        "confidence",
        "distribution",
        "correct",
        "transcript_id",
    )

    def queryset(self):
        return Trial.objects.filter(self.ctx.participant_filter("participant__"))

    def rows(self):
        conditions = {
            pk: (kind, name)
            for pk, kind, name in Condition.objects.filter(study=self.study).values_list("pk", "kind", "name")
        }
        # Scored items belong to a condition's sample; practice and catch items to the study (condition null).
        task_of = {
            (condition_id, item_id, role): task
            for condition_id, item_id, role, task in ConditionItem.objects.filter(study=self.study).values_list(
                "condition_id", "item_id", "role", "task__name"
            )
        }
        qs = self.queryset().order_by("participant_id", "position")
        for (
            pk,
            participant_id,
            participant_kind,
            condition_id,
            item_id,
            role,
            position,
            time_limit,
            status,
            shown,
            deadline,
            submitted,
            submit_kind,
            selected_choice,
            selected_confidence,
            choice,
            confidence,
            distribution,
            correct,
            transcript_id,
        ) in self.stream(
            qs,
            "pk",
            "participant_id",
            "participant__kind",
            "condition_id",
            "item_id",
            "role",
            "position",
            "time_limit_s",
            "status",
            "shown_at",
            "deadline_at",
            "submitted_at",
            "submit_kind",
            "selected_choice",
            "selected_confidence",
            "choice",
            "confidence",
            "distribution",
            "correct",
            "transcript_id",
        ):
            kind, name = conditions.get(condition_id, ("", ""))
            task = task_of.get((condition_id if role == ConditionItem.Role.SCORED else None, item_id, role), "")
            used = (submitted - shown).total_seconds() if shown and submitted else None
            yield (
                pk,
                pid(participant_id),
                participant_kind,
                condition_id,
                kind,
                name,
                task,
                item_id,
                role,
                position,
                time_limit,
                status,
                shown,
                deadline,
                submitted,
                submit_kind,
                used,
                selected_choice,
                selected_confidence,
                choice,
                confidence,
                [float(p) for p in distribution] if distribution else None,
                correct,
                transcript_id,
            )


@register
class MessagesExporter(Exporter):
    identifier = "messages"
    batch_rows = 10_000
    fields = (
        "message_id",
        "trial_id",
        "participant_id",
        "seq",
        "role",
        "status",
        "content",
        "reply_to_id",
        "endpoint",
        "model_id",
        "sampling",
        "context",
        *MODEL_RECORD,
    )

    def queryset(self):
        return ChatMessage.objects.filter(self.ctx.participant_filter("trial__participant__"))

    def rows(self):
        qs = self.queryset().order_by("trial_id", "seq")
        for row in self.stream(
            qs,
            "pk",
            "trial_id",
            "trial__participant_id",
            "seq",
            "role",
            "status",
            "content",
            "reply_to_id",
            "endpoint__name",
            "model_id",
            "sampling",
            "context",
            *MODEL_RECORD,
            raw_json=("sampling", "context", "quotes"),
        ):
            yield row[:2] + (pid(row[2]),) + row[3:8] + (row[8] or "",) + row[9:]


@register
class TranscriptsExporter(Exporter):
    identifier = "transcripts"
    fields = dictionary.table("transcripts").names

    def queryset(self):
        shown = Trial.objects.filter(self.ctx.participant_filter("participant__"), transcript_id=OuterRef("pk"))
        frozen = Q(shared=True, frozen_at__isnull=False)
        return Transcript.objects.filter(study=self.study).filter(frozen | Q(Exists(shown)))

    def rows(self):
        yield from self.stream(
            self.queryset().order_by("pk"),
            "pk",
            "condition_id",
            "item_id",
            "shared",
            "protocol",
            "options",
            "argues",
            "speakers",
            "chosen_by_model",
            "seed",
            "distractor_rule",
            "status",
            "rounds_done",
            "ended_by",
            "settings_hash",
            "content_hash",
            "created_at",
            "finished_at",
        )


@register
class TranscriptTurnsExporter(Exporter):
    identifier = "transcript_turns"
    batch_rows = 10_000
    fields = dictionary.table("transcript_turns").names

    def queryset(self):
        return TranscriptTurn.objects.filter(transcript__in=TranscriptsExporter(self.ctx).queryset())

    def rows(self):
        for row in self.stream(
            self.queryset().order_by("transcript_id", "seq"),
            "pk",
            "transcript_id",
            "seq",
            "round",
            "role",
            "position",
            "status",
            "content",
            "private",
            "raw",
            "words",
            "truncated",
            "endpoint__name",
            "model_id",
            "sampling",
            "prompt_hash",
            "context",
            *MODEL_RECORD,
            raw_json=("sampling", "context", "quotes"),
        ):
            yield row[:12] + (row[12] or "",) + row[13:]


@register
class EventsExporter(Exporter):
    identifier = "events"
    fields = ("event_id", "participant_id", "trial_id", "kind", "at", "data")

    def queryset(self):
        return Event.objects.filter(self.ctx.participant_filter("participant__"))

    def rows(self):
        keep_ids = self.ctx.include_external_ids
        qs = self.queryset().order_by("at", "pk")
        for pk, participant_id, trial_id, kind, at, data in self.stream(
            qs, "pk", "participant_id", "trial_id", "kind", "at", "data", raw_json=("data",)
        ):
            if data is None:
                data = RawJSON("{}")
            elif not keep_ids and any(key in data for key in RECRUITMENT_PARAMS):  # a cheap test on the text first
                decoded = json.loads(data)
                if isinstance(decoded, dict):
                    data = {k: v for k, v in decoded.items() if k not in RECRUITMENT_PARAMS}
            yield pk, pid(participant_id), trial_id, kind, at, data


@register
class ExclusionsExporter(Exporter):
    identifier = "exclusions"
    fields = ("exclusion_id", "participant_id", "rule", "reason", "created_at", "revoked_at", "active")

    def queryset(self):
        return Exclusion.objects.filter(self.ctx.participant_filter("participant__"))

    def rows(self):
        for pk, participant_id, rule, reason, created, revoked in self.stream(
            self.queryset().order_by("pk"), "pk", "participant_id", "rule", "reason", "created_at", "revoked_at"
        ):
            yield pk, pid(participant_id), rule, reason, created, revoked, revoked is None


class BaselineExporter(Exporter):
    """Runs made for this study and runs over one of its banks that belong to no study — the same selection
    as `oversight.reports.load.load_baselines`, so a report recomputed from the export matches."""

    def runs(self) -> QuerySet:
        banks = Task.objects.filter(study=self.study).values("bank_id")
        return BaselineRun.objects.filter(Q(study=self.study) | Q(study__isnull=True, bank_id__in=banks))


@register
class BaselineRunsExporter(BaselineExporter):
    identifier = "baseline_runs"
    fields = (
        "run_id",
        "scope",
        "bank",
        "split",
        "method",
        "endpoint",
        "model_label",
        "params",
        "template",
        "template_hash",
        "status",
        "total",
        "done",
        "errors",
        "summary",
        "created_at",
        "started_at",
        "finished_at",
    )

    def queryset(self):
        return self.runs().order_by("pk")

    def rows(self):
        for row in self.stream(
            self.queryset(),
            "pk",
            "study_id",
            "bank__name",
            "split",
            "method",
            "endpoint__name",
            "endpoint__model_label",
            "params",
            "template__name",
            "template_hash",
            "status",
            "total",
            "done",
            "errors",
            "summary",
            "created_at",
            "started_at",
            "finished_at",
        ):
            yield (
                row[0],
                "study" if row[1] else "bank",
                row[2] or "",
                row[3],
                row[4],
                row[5] or "",
                row[6] or "",
                *row[7:],
            )


@register
class BaselinesExporter(BaselineExporter):
    identifier = "baselines"
    batch_rows = 2_000  # prompts (few-shot: kilobytes) and raw responses with token log-probabilities
    fields = (
        "result_id",
        "run_id",
        "method",
        "endpoint",
        "item_id",
        "predicted",
        "correct",
        "probabilities",
        "latency_ms",
        "error_kind",
        "error",
        "missing_letters",
        "prompt",
        "response",
        "created_at",
    )

    def queryset(self):
        return BaselineResult.objects.filter(Q(run__in=self.runs()) & self.ctx.study_items("item_id"))

    def rows(self):
        qs = self.queryset().order_by("run_id", "item_id")
        for row in self.stream(
            qs,
            "pk",
            "run_id",
            "run__method",
            "run__endpoint__name",
            "item_id",
            "predicted",
            "correct",
            "probabilities",
            "latency_ms",
            "error_kind",
            "error",
            "missing_letters",
            "prompt",
            "response",
            "created_at",
            raw_json=("missing_letters", "response"),
        ):
            probabilities = [float(p) for p in row[7]] if row[7] else None
            yield (*row[:3], row[3] or "", *row[4:7], probabilities, *row[8:])
