"""The form that starts a model-alone baseline from a study's console page (views_baselines)."""

from __future__ import annotations

from django import forms

from oversight.baselines.models import Method
from oversight.baselines.services import STUDY_ITEMS
from oversight.core.models import ModelEndpoint, Study

SELECTOR_CHOICES = [
    ("self-consistency", "Self-consistency: the majority of the N samples"),
    ("best-of-n", "Best of N (the paper's): the sample a scorer rates highest"),
]
SCORER_CHOICES = [
    ("", "—"),
    ("reward", "A reward model (text-embeddings-inference /predict)"),
    ("judge", "A judge prompt scored by log-probability"),
]


def item_choices(study: Study) -> list[tuple[str, str]]:
    """The study's own items (the paired comparison), or one of its banks, split by split (the paper's number)."""
    choices = [(STUDY_ITEMS, "The study's items (the paired comparison)")]
    for task in study.tasks.filter(role="scored").select_related("bank").order_by("position", "pk"):
        bank = task.bank
        counts = bank.items.order_by("split").values_list("split", flat=True).distinct()
        for split in counts:
            n = bank.items.filter(split=split).count()
            choices.append((f"bank:{bank.pk}:{split}", f"{task.name}: “{bank.name}”, split {split or '—'} ({n} items)"))
    return choices


class BaselineRunForm(forms.Form):
    method = forms.ChoiceField(
        choices=[
            (Method.ZERO_SHOT, "Zero-shot"),
            (Method.FEW_SHOT, "Few-shot (labelled dev examples of the same subject)"),
            (Method.COT, "Chain of thought"),
        ]
    )
    endpoint = forms.ModelChoiceField(queryset=ModelEndpoint.objects.order_by("name"), empty_label=None)
    items = forms.ChoiceField(help_text="The paper scores the model on the whole split (MMLU val, QuALITY dev).")
    shots = forms.IntegerField(
        required=False,
        min_value=0,
        help_text="Few-shot: examples per prompt (default 5). Chain of thought: 5 for the paper's MMLU 5-shot CoT.",
    )
    samples = forms.IntegerField(required=False, min_value=1, help_text="Chain of thought: N samples (default 20).")
    selector = forms.ChoiceField(choices=SELECTOR_CHOICES, required=False)
    scorer = forms.ChoiceField(choices=SCORER_CHOICES, required=False)
    scorer_endpoint = forms.ModelChoiceField(
        queryset=ModelEndpoint.objects.order_by("name"),
        required=False,
        help_text="Where the reward model (or the judge) is served; a judge defaults to the run's endpoint.",
    )
    passage_examples = forms.BooleanField(
        required=False, label="Allow examples on items with a story (QuALITY; the paper has none)"
    )

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["items"].choices = item_choices(study)

    def run_params(self) -> dict:
        """The runner's parameters for what was filled in (the runner fills in and checks the rest)."""
        data = self.cleaned_data
        params: dict = {"shots": data.get("shots")}
        if data["method"] == Method.COT:
            endpoint = data.get("scorer_endpoint")
            params.update(
                samples=data.get("samples"),
                selector=data.get("selector") or None,
                scorer=data.get("scorer") or None,
                scorer_endpoint=endpoint.name if endpoint else None,
            )
        if data.get("passage_examples"):
            params["passage_examples"] = True
        if data["method"] == Method.ZERO_SHOT:
            params.pop("shots")
        return params
