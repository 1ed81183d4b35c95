"""Console forms: a study's design (study, task, condition), recruitment, collaborators, banks and endpoints.

Design forms refuse a change that would make the design unrunnable. Rather than restate the launch rules,
they ask `study_design_problems_added` (the rules `study_launch` enforces, run with the unsaved change in
place): a problem the change would *add* is a validation error, in the same words launch would use.
"""

from __future__ import annotations

import copy
import csv
import json
import re
import tarfile
import zipfile
from dataclasses import fields as dataclass_fields
from pathlib import PurePosixPath

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.forms.models import construct_instance

from oversight.assistant.backends import SAMPLING_KEYS  # the keys the backends send; others are dropped
from oversight.assistant.simulated import SimulationSettings
from oversight.banks.importers import mmlu, quality
from oversight.banks.models import Bank
from oversight.core import protocols
from oversight.core.models import Advocate, Collaborator, Condition, ModelEndpoint, Study, Task
from oversight.core.protocols import ProtocolSettings
from oversight.core.services.studies import study_design_problems_added

# Slugs that would collide with a URL: /s/p/<token>/ is the participant's own page, /console/studies/new
# the create form.
RESERVED_SLUGS = frozenset({"p", "new"})


def _check_slug(slug: str) -> str:
    if slug in RESERVED_SLUGS:
        raise forms.ValidationError(f"“{slug}” is reserved for the site's own pages; choose another slug.")
    return slug


class _NoColon:
    """Labels without Django's trailing colon (they read as headings above the inputs, or beside a checkbox)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class CommaListField(forms.CharField):
    """A JSON list of strings edited as comma-separated text ("val, test")."""

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        text = super().to_python(value) or ""
        seen: list[str] = []
        for part in (p.strip() for p in text.split(",")):
            if part and part not in seen:
                seen.append(part)
        return seen


COMPREHENSION_EXAMPLE = """May you use a search engine?
- Yes
* No

What happens when the timer reaches zero?
* The selected answer is submitted
- Nothing"""


class ComprehensionField(forms.CharField):
    """The comprehension check, written as text: a question, then its options, one per line, the right one marked
    with `*` and the others with `-`; a blank line before the next question. Stored as
    [{"question", "options", "answer"}] (Study.comprehension_questions)."""

    widget = forms.Textarea(attrs={"rows": 7, "placeholder": COMPREHENSION_EXAMPLE})

    def __init__(self, *, encoder=None, decoder=None, **kwargs):
        super().__init__(**kwargs)  # the model's JSONField offers its JSON encoder and decoder: not needed here

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n\n".join(
                "\n".join(
                    [q["question"], *(f"{'*' if i == q['answer'] else '-'} {o}" for i, o in enumerate(q["options"]))]
                )
                for q in value
            )
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        text = (super().to_python(value) or "").replace("\r\n", "\n")
        questions, problems = [], []
        for block in re.split(r"\n[ \t]*\n", text.strip()) if text.strip() else []:
            lines = [line.strip() for line in block.splitlines() if line.strip()]
            question = " ".join(line for line in lines if not line.startswith(("-", "*")))
            options = [(line[0] == "*", line[1:].strip()) for line in lines if line.startswith(("-", "*"))]
            n = len(questions) + 1
            if not question:
                problems.append(f"Question {n} has no question text (a line without “-” or “*” before its options).")
            elif len(options) < 2 or any(not o for _, o in options):
                problems.append(f"“{question}”: give at least two options, one per line, each after “-” or “*”.")
            elif sum(right for right, _ in options) != 1:
                problems.append(f"“{question}”: mark exactly one option, the right one, with “*”.")
            else:
                answer = next(i for i, (right, _) in enumerate(options) if right)
                questions.append({"question": question, "options": [o for _, o in options], "answer": answer})
                continue
            questions.append(None)
        if problems:
            raise forms.ValidationError(problems)
        return questions


# --- Studies -------------------------------------------------------------------------------------------------


class StudyForm(_NoColon, forms.ModelForm):
    class Meta:
        model = Study
        fields = [
            "title",
            "slug",
            "consent_text",
            "instructions",
            "comprehension_questions",
            "comprehension_max_attempts",
            "completion_message",
            "design",
            "order",
            "disjoint_samples",
            "sample_seed",
            "randomise_item_order",
            "confidence_format",
            "reveal_gold",
            "catch_pass_threshold",
            "blind_collaborators",
        ]
        labels = {
            "slug": "Slug (the participant link is /s/<slug>/)",
            "disjoint_samples": "Disjoint samples (each condition gets its own items, as in the paper)",
            "randomise_item_order": "Randomise the item order per participant",
            "reveal_gold": "Show the correct option after each answer",
            "catch_pass_threshold": "Catch items to get right (share, 0–1)",
            "blind_collaborators": "Blind collaborators (hide accuracy while the study runs)",
            "instructions": "Instructions (shown after consent, before the first item)",
            "comprehension_questions": "Questions on the instructions (empty: no check)",
            "comprehension_max_attempts": "Attempts before a participant is screened out",
        }
        help_texts = {
            "instructions": "",
            "comprehension_questions": "A question, then its options one per line: “*” before the right one, “-” "
            "before the others; a blank line between questions. Participants must get every answer right to go on.",
            "comprehension_max_attempts": "A participant whose answers are not all right this many times is screened "
            "out and shown the screen-out code (Prolific asks for at least 2 attempts).",
            "reveal_gold": "",
            "catch_pass_threshold": "1 = every catch item right; a participant below it is screened out.",
        }
        widgets = {
            "consent_text": forms.Textarea(attrs={"rows": 6}),
            "instructions": forms.Textarea(attrs={"rows": 3}),
            "completion_message": forms.Textarea(attrs={"rows": 2}),
        }
        field_classes = {"comprehension_questions": ComprehensionField}

    fieldsets = [
        ("The study", ["title", "slug"]),
        ("What participants read", ["consent_text", "instructions", "completion_message"]),
        ("Comprehension check", ["comprehension_questions", "comprehension_max_attempts"]),
        ("Design", ["design", "order", "confidence_format", "reveal_gold"]),
        ("Items", ["disjoint_samples", "sample_seed", "randomise_item_order", "catch_pass_threshold"]),
        ("Collaborators", ["blind_collaborators"]),
    ]

    def grouped(self):
        return [(legend, [self[name] for name in names]) for legend, names in self.fieldsets]

    def clean_slug(self):
        return _check_slug(self.cleaned_data["slug"])

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["comprehension_max_attempts"].required = False  # empty: the default

    def clean_comprehension_max_attempts(self):
        value = self.cleaned_data["comprehension_max_attempts"]
        if value is None:
            return Study._meta.get_field("comprehension_max_attempts").default
        if not 1 <= value <= 10:
            raise forms.ValidationError("Give between 1 and 10 attempts.")
        return value

    def clean_catch_pass_threshold(self):
        value = self.cleaned_data["catch_pass_threshold"]
        if not 0 <= value <= 1:
            raise forms.ValidationError("Give a share between 0 and 1 (1 = every catch item right).")
        return value

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk and not self.errors:
            candidate = construct_instance(self, copy.copy(self.instance))
            for problem in study_design_problems_added(study=self.instance, change=candidate):
                # Only disjoint_samples, of the study's own fields, enters the launch checks.
                self.add_error("disjoint_samples", problem)
        return cleaned


class RecruitmentForm(_NoColon, forms.ModelForm):
    class Meta:
        model = Study
        fields = ["prolific_completion_url", "completion_code", "screenout_code", "allow_external_id_export"]
        labels = {
            "prolific_completion_url": "Completion URL (Prolific: https://app.prolific.com/submissions/complete?cc=…)",
            "completion_code": "Completion code",
            "screenout_code": "Screen-out code (failed attention checks)",
            "allow_external_id_export": "Include recruitment ids (Prolific PIDs) in exports",
        }

    def clean(self):
        cleaned = super().clean()
        done, out = cleaned.get("completion_code"), cleaned.get("screenout_code")
        if done and out and done == out:
            self.add_error("screenout_code", "The screen-out code must differ from the completion code.")
        return cleaned


class CloneForm(_NoColon, forms.Form):
    slug = forms.SlugField(max_length=64, label="Slug of the copy")
    title = forms.CharField(max_length=200, required=False, help_text="Empty: the original title with “(copy)”")

    def clean_slug(self):
        slug = _check_slug(self.cleaned_data["slug"])
        if Study.objects.filter(slug=slug).exists():
            raise forms.ValidationError(f"A study with the slug “{slug}” already exists.")
        return slug


class _DesignPartForm(_NoColon, forms.ModelForm):
    """A task or condition of `study`: refuses changes that would add a launch problem."""

    problem_field = None  # where a problem about this object is shown

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        self.study = study
        self.instance.study = study

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            candidate = construct_instance(self, copy.copy(self.instance))
            extra = {"advocates": self.candidate_advocates(candidate)} if hasattr(self, "candidate_advocates") else {}
            for problem in study_design_problems_added(study=self.study, change=candidate, **extra):
                self.add_error(self.problem_field if f"“{candidate.name}”" in problem else None, problem)
        return cleaned


class TaskForm(_DesignPartForm):
    problem_field = "sample_size"
    splits = CommaListField(required=False, help_text="Comma-separated, e.g. “val, test”; empty: all splits")
    subjects = CommaListField(required=False, help_text="Comma-separated; empty: all subjects")

    class Meta:
        model = Task
        fields = [
            "name",
            "role",
            "bank",
            "sample_size",
            "time_limit_s",
            "splits",
            "subjects",
            "difficult_only",
            "separate_stories",
            "position",
        ]
        labels = {
            "time_limit_s": "Time limit per item (seconds)",
            "difficult_only": "Difficult items only (QuALITY)",
            "separate_stories": "Keep each story in one condition (QuALITY: nobody meets a story twice)",
            "position": "Order",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["bank"]
        field.queryset = Bank.objects.annotate(n_items=Count("items"))
        field.label_from_instance = lambda bank: f"{bank.name} ({bank.n_items} items)"

    def clean_sample_size(self):
        value = self.cleaned_data["sample_size"]
        if value < 1:
            raise forms.ValidationError("Draw at least one item.")
        return value


def _sampling(value) -> dict:
    value = value or {}
    if not isinstance(value, dict):
        raise forms.ValidationError('Give a JSON object, e.g. {"temperature": 0.7, "max_tokens": 512}.')
    unknown = sorted(set(value) - set(SAMPLING_KEYS))
    if unknown:
        raise forms.ValidationError(
            f"Unknown sampling setting(s) {', '.join(unknown)}; allowed: {', '.join(SAMPLING_KEYS)}."
        )
    return value


# The advocates' fields, per position (core.Advocate): 0 is the consultant, the evidence finder or Debater A's
# configuration, 1 Debater B's.
ADVOCATE_FIELDS = ("endpoint", "system_prompt", "sampling", "name")
ADVOCATE_ROLES = ("Consultant, evidence finder or Debater A", "Debater B (debates only)")


class ConditionForm(_DesignPartForm):
    """A condition; for a protocol kind also its settings (`Condition.protocol`, JSON validated by
    `core.protocols.ProtocolSettings`) and its advocates (one, or two for a debate). The launch rules
    (`condition_protocol_problems`) run with the advocates as the form has them, before anything is saved."""

    problem_field = "endpoint"

    class Meta:
        model = Condition
        fields = [
            "name",
            "kind",
            "endpoint",
            "system_prompt",
            "sampling",
            "inject_passage",
            "send_question",
            "max_message_chars",
            "max_turns",
            "protocol",
            "instructions",
            "position",
        ]
        labels = {
            "position": "Order",
            "sampling": "Sampling (JSON)",
            "instructions": "Instructions for this block",
            "protocol": "Protocol settings (JSON)",
        }
        help_texts = {
            "instructions": "Shown before this condition's items, e.g. “You may chat with the AI assistant” or “Answer "
            "on your own, without outside resources”.",
            "protocol": "Consultancy, debate and their variants only; empty: the defaults of Khan et al. 2024 (3 "
            "rounds, simultaneous, 150 words, a 50-word quote budget, the story hidden). Keys: "
            + ", ".join(f.name for f in dataclass_fields(ProtocolSettings))
            + ' — e.g. {"rounds": 2, "transcripts": "static"}. docs/protocols.md explains each.',
        }
        widgets = {
            "system_prompt": forms.Textarea(attrs={"rows": 4}),
            "sampling": forms.Textarea(attrs={"rows": 2}),
            "instructions": forms.Textarea(attrs={"rows": 3}),
            "protocol": forms.Textarea(attrs={"rows": 3}),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        stored = {a.position: a for a in self.instance.advocates.all()} if self.instance.pk else {}
        endpoints = ModelEndpoint.objects.order_by("name")
        for position, role in enumerate(ADVOCATE_ROLES):
            advocate = stored.get(position)
            prefix = f"advocate_{position}_"
            self.fields[prefix + "endpoint"] = forms.ModelChoiceField(
                endpoints, required=False, label=f"{role}: endpoint", initial=advocate and advocate.endpoint_id
            )
            self.fields[prefix + "system_prompt"] = forms.CharField(
                required=False,
                widget=forms.Textarea(attrs={"rows": 3}),
                label=f"{role}: system prompt",
                help_text="Empty: the platform's default for the protocol (frozen in the manifest at launch).",
                initial=advocate and advocate.system_prompt,
            )
            self.fields[prefix + "sampling"] = forms.JSONField(
                required=False,
                widget=forms.Textarea(attrs={"rows": 2}),
                label=f"{role}: sampling (JSON)",
                initial=advocate.sampling if advocate else {},
            )
            self.fields[prefix + "name"] = forms.CharField(
                required=False, max_length=100, label=f"{role}: label", initial=advocate and advocate.name
            )

    def clean_sampling(self):
        return _sampling(self.cleaned_data.get("sampling"))

    def clean_advocate_0_sampling(self):
        return _sampling(self.cleaned_data.get("advocate_0_sampling"))

    def clean_advocate_1_sampling(self):
        return _sampling(self.cleaned_data.get("advocate_1_sampling"))

    def clean_protocol(self):
        value = self.cleaned_data.get("protocol") or {}
        if not isinstance(value, dict):
            raise forms.ValidationError('Give a JSON object, e.g. {"rounds": 3, "word_limit": 150}.')
        return value

    def candidate_advocates(self, condition: Condition) -> list[Advocate]:
        """The advocates the form describes (unsaved): one per position whose endpoint is set, up to the number
        the kind has (extra ones are not kept, so they are not counted either)."""
        if not condition.is_protocol:
            return []
        advocates = []
        for position in range(protocols.advocates_needed(condition.kind)):
            endpoint = self.cleaned_data.get(f"advocate_{position}_endpoint")
            if endpoint is None:
                continue
            advocates.append(
                Advocate(
                    condition=condition,
                    position=position,
                    endpoint=endpoint,
                    system_prompt=self.cleaned_data.get(f"advocate_{position}_system_prompt") or "",
                    sampling=self.cleaned_data.get(f"advocate_{position}_sampling") or {},
                    name=self.cleaned_data.get(f"advocate_{position}_name") or "",
                )
            )
        return advocates

    def clean(self):
        kind, endpoint = self.cleaned_data.get("kind"), self.cleaned_data.get("endpoint")
        if kind == Condition.Kind.ASSISTED and endpoint is None:
            self.add_error("endpoint", "An assisted condition needs a model endpoint.")
        elif kind == Condition.Kind.UNAIDED and endpoint is not None:
            self.add_error("endpoint", "An unaided condition has no assistant; leave the endpoint empty.")
        if kind and not protocols.is_protocol(kind) and self.cleaned_data.get("protocol"):
            self.add_error("protocol", "Only consultancy, debate and their variants take protocol settings.")
        return super().clean()

    def save(self, commit=True):
        condition = super().save(commit=commit)
        if commit:
            advocates = self.candidate_advocates(condition)
            condition.advocates.exclude(position__in=[a.position for a in advocates]).delete()
            for advocate in advocates:
                Advocate.objects.update_or_create(
                    condition=condition,
                    position=advocate.position,
                    defaults={f: getattr(advocate, f) for f in ADVOCATE_FIELDS},
                )
        return condition


class CollaboratorForm(_NoColon, forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Collaborator.Role.choices, initial=Collaborator.Role.VIEWER)
    blind = forms.BooleanField(required=False, label="Blind (hide accuracy while the study runs)")

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        self.study = study

    def clean_username(self):
        username = self.cleaned_data["username"].strip()
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise forms.ValidationError(f"There is no account “{username}”.")
        if user.pk == self.study.owner_id:
            raise forms.ValidationError(f"{username} owns this study.")
        self.user = user
        return username


# --- Banks ---------------------------------------------------------------------------------------------------

BANK_FORMATS = [
    ("", "Detect from the file"),
    ("mmlu", "MMLU (data.tar, or a zip of its CSVs)"),
    ("quality", "QuALITY (JSON Lines, or the official zip)"),
    ("custom", "Custom (CSV with a header, or JSON Lines)"),
]
DEFAULT_BANK_NAMES = {"mmlu": mmlu.DEFAULT_BANK, "quality": quality.DEFAULT_BANK}
_MMLU_CSV = re.compile(r"^.+_(dev|val|test)\.csv$")
_QUALITY_NAME = re.compile(r"\.(train|dev|test)(\.jsonl?)?$", re.IGNORECASE)


class CannotDetect(ValueError):
    pass


def detect_upload_format(upload) -> tuple[str, str | None]:
    """(importer, custom sub-format) for an uploaded file: archives by their members, files by their start.

    Content wins over the name: a custom bank may well be called `physics_test.csv` or `mine.dev.jsonl`.
    """
    name = PurePosixPath(upload.name).name.lower()
    try:
        upload.seek(0)
        if zipfile.is_zipfile(upload):
            upload.seek(0)
            with zipfile.ZipFile(upload) as archive:
                names = [PurePosixPath(n).name for n in archive.namelist()]
            if any(_MMLU_CSV.match(n) for n in names):
                return "mmlu", None
            if any(_QUALITY_NAME.search(n) or n.endswith(".jsonl") for n in names):
                return "quality", None
            raise CannotDetect("The zip holds neither MMLU CSVs (<subject>_<split>.csv) nor QuALITY files.")
        upload.seek(0)
        if name.endswith((".tar", ".tar.gz", ".tgz")) or tarfile.is_tarfile(upload):
            return "mmlu", None
        upload.seek(0)
        head = upload.read(64 * 1024).decode("utf-8", errors="replace").lstrip("\ufeff")
    finally:
        upload.seek(0)
    first = next((line for line in head.splitlines() if line.strip()), "").strip()
    if first.startswith("{"):
        try:
            record = json.loads(first)
        except ValueError:
            record = None
        if isinstance(record, dict) and ("article" in record or "questions" in record):
            return "quality", None
        return "custom", "jsonl"
    header = {field.strip().lower() for field in next(csv.reader([first]), [])}
    if {"id", "question"} <= header:
        return "custom", "csv"
    if _MMLU_CSV.match(name):
        return "mmlu", None
    if name.endswith(".csv"):
        return "custom", "csv"
    raise CannotDetect("Cannot tell the format of this file; choose it above.")


def custom_subformat(upload) -> str:
    suffix = PurePosixPath(upload.name).suffix.lower()
    if suffix in {".csv", ".jsonl", ".ndjson"}:
        return "csv" if suffix == ".csv" else "jsonl"
    upload.seek(0)
    head = upload.read(1024).decode("utf-8", errors="replace").lstrip("\ufeff").lstrip()
    upload.seek(0)
    return "jsonl" if head.startswith("{") else "csv"


class BankUploadForm(_NoColon, forms.Form):
    file = forms.FileField(
        help_text="MMLU's data.tar or a zip of its CSVs; a QuALITY .jsonl or zip; a custom "
        ".csv or .jsonl (columns in docs/banks.md)."
    )
    format = forms.ChoiceField(choices=BANK_FORMATS, required=False)
    bank_name = forms.CharField(
        max_length=100,
        required=False,
        help_text="Empty: MMLU, QuALITY, or the file's name for a custom bank. Importing into an existing bank "
        "adds new items and updates changed ones.",
    )

    def clean(self):
        cleaned = super().clean()
        upload = cleaned.get("file")
        if upload is None:
            return cleaned
        fmt, sub = cleaned.get("format") or "", None
        if not fmt:
            try:
                fmt, sub = detect_upload_format(upload)
            except CannotDetect as exc:
                self.add_error("format", str(exc))
                return cleaned
            except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
                self.add_error("file", f"Cannot read this file: {exc}")
                return cleaned
        if fmt == "custom" and sub is None:
            sub = custom_subformat(upload)
        cleaned["format"], cleaned["custom_format"] = fmt, sub
        name = (cleaned.get("bank_name") or "").strip()
        cleaned["bank_name"] = name or DEFAULT_BANK_NAMES.get(fmt) or PurePosixPath(upload.name).stem[:100]
        return cleaned


# --- Endpoints -----------------------------------------------------------------------------------------------

# What a live study's manifest froze about its endpoint and what changes what participants get from it.
# The address, token and limits may change (a server moves, a token is rotated); these may not.
FROZEN_WHILE_LIVE = ("kind", "model_label", "simulation")


class EndpointForm(_NoColon, forms.ModelForm):
    token = forms.CharField(
        required=False,
        max_length=500,
        widget=forms.PasswordInput(render_value=False),
        help_text="Never shown again. Editing: leave empty to keep the current token.",
    )
    clear_token = forms.BooleanField(required=False, label="Remove the stored token")

    class Meta:
        model = ModelEndpoint
        fields = [
            "name",
            "kind",
            "base_url",
            "token",
            "model_label",
            "request_timeout_s",
            "max_concurrency",
            "simulation",
        ]
        labels = {
            "base_url": "Base URL",
            "request_timeout_s": "Request timeout (s)",
            "simulation": "Simulation settings (JSON, simulated endpoints only)",
        }
        help_texts = {
            "simulation": "accuracy, seed, ttft_ms, tokens_per_s, sycophancy, quote_rate; missing keys take defaults."
        }
        widgets = {"simulation": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.old_token = self.instance.token if self.instance.pk else ""
        if self.old_token:
            self.order_fields(["name", "kind", "base_url", "token", "clear_token"])
        else:
            del self.fields["clear_token"]
        self.live_studies = (
            list(Study.objects.filter(status=Study.Status.LIVE, conditions__endpoint=self.instance).distinct())
            if self.instance.pk
            else []
        )

    def clean_token(self):
        return self.cleaned_data.get("token") or self.old_token

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("clear_token"):
            cleaned["token"] = ""
        kind = cleaned.get("kind")
        if kind in {ModelEndpoint.Kind.TGI, ModelEndpoint.Kind.OPENAI} and not cleaned.get("base_url"):
            self.add_error("base_url", "A TGI or OpenAI-compatible endpoint needs the server's base URL.")
        simulation = cleaned.get("simulation") or {}
        cleaned["simulation"] = simulation
        if kind == ModelEndpoint.Kind.SIMULATED:
            try:
                SimulationSettings.from_dict(simulation)
            except (ValueError, TypeError) as exc:
                self.add_error("simulation", str(exc))
        elif simulation:
            self.add_error("simulation", "Only a simulated endpoint takes simulation settings; leave this empty.")
        if self.live_studies:
            names = ", ".join(s.slug for s in self.live_studies)
            for name in FROZEN_WHILE_LIVE:
                if name in cleaned and name not in self.errors and _differs(name, cleaned[name], self.instance):
                    self.add_error(
                        name,
                        f"Live studies ({names}) use this endpoint and their manifests froze this "
                        f"setting; add a new endpoint instead.",
                    )
        return cleaned


def _differs(name: str, value, endpoint: ModelEndpoint) -> bool:
    old = getattr(endpoint, name)
    if name == "simulation" and endpoint.kind == ModelEndpoint.Kind.SIMULATED:
        # {"seed": 1} and {"seed": 1, "accuracy": 0.7} are the same assistant: compare with defaults filled in.
        try:
            return SimulationSettings.from_dict(value).as_dict() != SimulationSettings.from_dict(old).as_dict()
        except (ValueError, TypeError):
            return True
    return value != old


# --- Exports and payments --------------------------------------------------------------------------------------


class ExportForm(_NoColon, forms.Form):
    """What to export. Recruitment ids only for those who may see them, and only where the study allows it: a
    tampered POST (an unknown format, ids the study forbids) is refused here, before any job exists."""

    formats = forms.ChoiceField(
        choices=[
            ("all", "All three (CSV, JSONL and Parquet)"),
            ("csv", "CSV"),
            ("jsonl", "JSONL"),
            ("parquet", "Parquet"),
        ],
        initial="all",
        widget=forms.RadioSelect,
        label="Formats",
        error_messages={"invalid_choice": "Choose CSV, JSONL, Parquet or all three (got “%(value)s”)."},
    )
    include_external_ids = forms.BooleanField(
        required=False,
        label="Include recruitment ids (Prolific PIDs)",
        help_text="Identifies participants: for paying and linking records, never for publication.",
    )
    include_pilots = forms.BooleanField(required=False, label="Include pilot participants (marked)")

    def __init__(self, *args, study: Study, may_identify: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.study = study
        self.may_identify = may_identify
        if not (may_identify and study.allow_external_id_export):
            self.fields["include_external_ids"].disabled = True

    def clean_include_external_ids(self):
        # A disabled field takes its initial value, so read what was actually posted.
        wanted = self.fields["include_external_ids"].widget.value_from_datadict(
            self.data, self.files, self.add_prefix("include_external_ids")
        )
        if not wanted:
            return False
        if not self.may_identify:
            raise forms.ValidationError("Only the study's owner and editors may export recruitment ids.")
        from oversight.exports.services import ExportNotAllowed, check_allowed

        try:
            check_allowed(study=self.study, include_external_ids=True)
        except ExportNotAllowed as exc:
            raise forms.ValidationError(str(exc)) from None
        return True


class BonusForm(_NoColon, forms.Form):
    """The Prolific bonus rule: a fixed amount per correct scored answer (oversight/exports/payments.py)."""

    per_correct = forms.DecimalField(
        label="Bonus per correct answer",
        min_value=0,
        max_digits=8,
        decimal_places=4,
        help_text="In the Prolific study's currency, e.g. 0.10. Totals are rounded to the cent (half up).",
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "class": "short"}),
    )
    withhold_excluded = forms.BooleanField(required=False, label="No bonus for participants with an active exclusion")
