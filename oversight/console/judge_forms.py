"""The form that starts a judge run from a study's console page (views_judges)."""

from __future__ import annotations

from django import forms

from oversight.core.models import ModelEndpoint, Study
from oversight.judges.models import AnswerMethod, Mode


class JudgeRunForm(forms.Form):
    condition = forms.ModelChoiceField(queryset=None, empty_label=None)
    endpoint = forms.ModelChoiceField(
        queryset=ModelEndpoint.objects.order_by("name"), empty_label=None, label="The judge's endpoint"
    )
    mode = forms.ChoiceField(
        choices=Mode.choices,
        help_text="Replay: the model judges what each person judged (the paired comparison). Live: it takes the "
        "judge's seat itself; in an assisted condition it asks the assistant its own questions.",
    )
    answer = forms.ChoiceField(choices=AnswerMethod.choices, label="How it answers")
    questions = forms.IntegerField(
        required=False, min_value=1, max_value=10, help_text="Live assisted: the judge's messages per item (default 1)."
    )

    def __init__(self, *args, study: Study, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["condition"].queryset = study.conditions.order_by("position", "pk")

    def run_params(self) -> dict:
        questions = self.cleaned_data.get("questions")
        return {"questions": questions} if questions and self.cleaned_data["mode"] == Mode.LIVE else {}
