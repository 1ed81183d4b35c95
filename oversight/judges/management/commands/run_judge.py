"""`manage.py run_judge demo --condition Assisted --endpoint fake-tgi --mode live`: put a model in the judge's seat
of a launched study's condition (docs/judges.md). Runs here and prints the outcome; `--enqueue` hands it to the
workers instead; `--cancel RUN` stops a run."""

from django.core.management.base import BaseCommand, CommandError

from oversight.core.models import ModelEndpoint, Study
from oversight.judges.models import AnswerMethod, JudgeRun, Mode
from oversight.judges.runner import RunError, execute
from oversight.judges.services import judge_run_cancel, judge_run_request


class Command(BaseCommand):
    help = "Judge a launched study's condition with a model (replay people's material, or live)."

    def add_arguments(self, parser):
        parser.add_argument("study", help="The study's slug")
        parser.add_argument("--condition", help="The condition's name or id")
        parser.add_argument("--endpoint", help="The judge's endpoint (name)")
        parser.add_argument("--mode", choices=Mode.values, default=Mode.REPLAY)
        parser.add_argument("--answer", choices=AnswerMethod.values, default=AnswerMethod.AUTO)
        parser.add_argument("--questions", type=int, default=1, help="Live assisted: the judge's messages per item")
        parser.add_argument("--enqueue", action="store_true", help="Hand the run to the workers instead of running it")
        parser.add_argument("--cancel", type=int, metavar="RUN", help="Stop this run of the study")

    def handle(self, *args, **options):
        study = Study.objects.filter(slug=options["study"]).first()
        if study is None:
            raise CommandError(f"no study {options['study']!r}")
        if options["cancel"]:
            run = JudgeRun.objects.filter(pk=options["cancel"], study=study).first()
            if run is None:
                raise CommandError(f"no judge run {options['cancel']} in this study")
            judge_run_cancel(study=study, run=run)
            self.stdout.write(f"Asked judge run {run.pk} to stop.")
            return
        wanted = options["condition"] or ""
        conditions = study.conditions.all()
        by = {"pk": int(wanted)} if wanted.isdigit() else {"name": wanted}
        condition = conditions.filter(**by).first()
        if condition is None:
            names = ", ".join(conditions.values_list("name", flat=True))
            raise CommandError(f"choose a condition with --condition: {names}")
        endpoint = ModelEndpoint.objects.filter(name=options["endpoint"] or "").first()
        if endpoint is None:
            names = ", ".join(ModelEndpoint.objects.values_list("name", flat=True))
            raise CommandError(f"choose the judge's endpoint with --endpoint: {names}")
        params = {"questions": options["questions"]} if options["mode"] == Mode.LIVE else {}
        try:
            run = judge_run_request(
                study=study,
                condition=condition,
                endpoint=endpoint,
                mode=options["mode"],
                answer=options["answer"],
                params=params,
                enqueue=options["enqueue"],
            )
        except RunError as exc:
            raise CommandError(str(exc)) from exc
        if options["enqueue"]:
            self.stdout.write(f"Judge run {run.pk} queued.")
            return
        outcome = execute(run.pk)
        run.refresh_from_db()
        self.stdout.write(f"Judge run {run.pk}: {outcome.outcome}. {run.message}")
