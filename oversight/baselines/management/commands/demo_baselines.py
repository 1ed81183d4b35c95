"""`manage.py demo_baselines [slug]`: the demo study's model-alone baselines (`services.demo_baselines_seed`).

`seed_demo` calls it by name (core does not import the apps above it), so a fresh demo's report shows the model's
number beside the participants'. Safe to run again."""

from django.core.management.base import BaseCommand, CommandError

from oversight.baselines.services import demo_baselines_seed
from oversight.core.demo import DEMO_STUDY_SLUG
from oversight.core.models import Study


class Command(BaseCommand):
    help = "Score the demo study's banks with its simulated assistant alone (zero-shot), once."

    def add_arguments(self, parser):
        parser.add_argument("slug", nargs="?", default=DEMO_STUDY_SLUG, help="the study (default: the demo)")

    def handle(self, *args, slug, **options):
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"No study with the slug “{slug}”.")
        for run in demo_baselines_seed(study=study):
            accuracy = (run.summary or {}).get("accuracy")
            where = f"{run.bank.name}" + (f", split {run.split}" if run.split else "")
            shown = "n/a" if accuracy is None else f"{accuracy:.1f}%"
            self.stdout.write(f"  Model alone (zero-shot, simulated) on {where}: {shown} of {run.total} items")
