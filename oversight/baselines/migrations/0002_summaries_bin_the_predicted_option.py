"""Finished runs' summaries bin the predicted option's probability, as the report does (issue 14.6).

Summaries written before bin the maximum probability, which differs for a self-consistency vote, and carry no count
of right answers (the report's "model on its split" row needs it). Recompute them from the stored results; runs
without a summary (not finished) get theirs when they finish.
"""

from django.db import migrations


def recompute(apps, schema_editor):
    from oversight.analysis.tables import SUMMARY_CONFIDENCE
    from oversight.baselines.runner import summary_of

    BaselineRun = apps.get_model("baselines", "BaselineRun")
    BaselineResult = apps.get_model("baselines", "BaselineResult")
    for run in BaselineRun.objects.filter(summary__isnull=False).iterator():
        if (run.summary or {}).get("confidence") != SUMMARY_CONFIDENCE:
            run.summary = summary_of(BaselineResult.objects.filter(run=run))
            run.save(update_fields=["summary"])


class Migration(migrations.Migration):
    dependencies = [("baselines", "0001_initial")]

    operations = [migrations.RunPython(recompute, migrations.RunPython.noop)]
