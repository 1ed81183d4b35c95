"""Run a model-alone baseline in this process (not through the broker), with a progress bar and a summary.

    manage.py run_baseline --endpoint tgi --bank MMLU --split val --method zero-shot [--concurrency 32]
    manage.py run_baseline --endpoint tgi --bank MMLU --split val --method few-shot [--shots 5]
    manage.py run_baseline --endpoint tgi --study pilot-1 --method cot [--samples 20] [--temperature 0.7]
    manage.py run_baseline --endpoint tgi --bank MMLU --split val --method cot --selector best-of-n \
        --scorer reward --scorer-endpoint rm [--shots 5]          # the paper's best-of-20 CoT (5-shot for MMLU)
    manage.py run_baseline --resume 12 [--retry-errors]

Ctrl-C stops after writing what has finished; the run is left cancelled and `--resume RUN_ID` continues it.
"""

import logging
import sys
import time

from django.core.management.base import BaseCommand, CommandError

from oversight.analysis.tables import model_method_of
from oversight.banks.models import Bank
from oversight.baselines.models import BaselineRun, Method
from oversight.baselines.runner import Progress, RunError, create_run, execute, prepare_resume, run_summary
from oversight.core.models import ModelEndpoint, Study


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


class ProgressBar:
    def __init__(self, stream, width: int = 30):
        self.stream = stream
        self.width = width
        self.shown = False

    def __call__(self, p: Progress) -> None:
        frac = p.done / p.total if p.total else 1.0
        filled = int(self.width * frac)
        bar = "#" * filled + "-" * (self.width - filled)
        line = (
            f"\r[{bar}] {p.done}/{p.total} {100 * frac:5.1f}%  {p.rate:7.1f} items/s  "
            f"ETA {_duration(p.eta_s)}  errors {p.errors}"
        )
        self.stream.write(line)
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


class Command(BaseCommand):
    help = "Score a bank, split or study's items with a model alone (zero-shot, few-shot, chain of thought)."

    def add_arguments(self, parser):
        parser.add_argument("--endpoint", help="ModelEndpoint name")
        parser.add_argument("--bank", help="Bank name")
        parser.add_argument("--split", default="", help="only this split of the bank (e.g. val, test)")
        parser.add_argument("--study", help="study slug: exactly the scored items of its conditions")
        parser.add_argument("--method", choices=Method.values, default=Method.ZERO_SHOT)
        parser.add_argument(
            "--template",
            help="PromptTemplate name (default: the paper's, or the chat variant for OpenAI-compatible endpoints)",
        )
        parser.add_argument("--concurrency", type=int, help="requests in flight (capped by the endpoint's)")
        parser.add_argument(
            "--shots", type=int, help="few-shot: labelled examples per prompt (default 5); cot: examples (default 0)"
        )
        parser.add_argument("--samples", type=int, help="cot: reasoning samples per item (default 20)")
        parser.add_argument("--temperature", type=float, help="cot: sampling temperature (default 0.7)")
        parser.add_argument(
            "--selector", help="cot: self-consistency (default: a vote of the samples) or best-of-n (needs --scorer)"
        )
        parser.add_argument("--scorer", help="cot best-of-n: reward (a reward model's /predict) or judge")
        parser.add_argument(
            "--scorer-endpoint", dest="scorer_endpoint", help="the endpoint (name) serving the reward model or judge"
        )
        parser.add_argument("--reward-label", dest="reward_label", help="the reward model's label that counts")
        parser.add_argument(
            "--passage-examples",
            dest="passage_examples",
            action="store_const",
            const=True,
            help="allow examples on items with a story (QuALITY; off by default: the paper has none)",
        )
        parser.add_argument("--top-n", type=int, dest="top_n", help="top tokens asked for (default 5, TGI's cap)")
        parser.add_argument("--max-retries", type=int, dest="max_retries")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--resume", type=int, metavar="RUN_ID", help="continue an unfinished run")
        parser.add_argument("--retry-errors", action="store_true", help="with --resume: score failed items again")
        parser.add_argument(
            "--force", action="store_true", help="with --resume: take over a run whose executor still looks alive"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")

    def handle(self, *args, **opts):
        for name in ("httpx", "httpx2"):  # one INFO line per request would bury the progress bar
            logging.getLogger(name).setLevel(logging.WARNING)
        run = self._resume(opts) if opts["resume"] else self._create(opts)
        self.stdout.write(self._describe(run))
        bar = None
        if not opts["no_progress"] and sys.stderr.isatty():
            bar = ProgressBar(sys.stderr)
        started = time.monotonic()
        try:
            result = execute(run.pk, on_progress=bar)
        finally:
            if bar is not None:
                bar.close()
        elapsed = time.monotonic() - started
        run = BaselineRun.objects.get(pk=run.pk)
        if result.outcome == "not_claimed":
            raise CommandError(f"run {run.pk} is {run.status} and could not be claimed (executed elsewhere?)")
        rate = result.scored / elapsed if elapsed > 0 else 0.0
        self.stdout.write(
            f"{run.status.capitalize()}: {run.done}/{run.total} items; {result.scored} scored now "
            f"in {elapsed:.1f} s ({rate:.1f} items/s)"
        )
        if result.message:
            self.stdout.write(f"  {result.message}")
        self._print_summary(run.summary or run_summary(run))
        if run.status != BaselineRun.Status.DONE:
            self.stdout.write(f"Resume with: manage.py run_baseline --resume {run.pk}")
            if result.interrupted:
                sys.exit(130)  # as a shell reports SIGINT; the summary above says the rest
            if run.status == BaselineRun.Status.FAILED:
                raise CommandError(f"run {run.pk} failed")

    def _create(self, opts) -> BaselineRun:
        if not opts["endpoint"]:
            raise CommandError("--endpoint is required (or --resume RUN_ID)")
        if not opts["bank"] and not opts["study"]:
            raise CommandError("give --bank and/or --study")
        endpoint = ModelEndpoint.objects.filter(name=opts["endpoint"]).first()
        if endpoint is None:
            known = ", ".join(ModelEndpoint.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no endpoint named {opts['endpoint']!r} (known: {known})")
        bank = study = None
        if opts["bank"]:
            bank = Bank.objects.filter(name=opts["bank"]).first()
            if bank is None:
                raise CommandError(f"no bank named {opts['bank']!r}")
        if opts["study"]:
            study = Study.objects.filter(slug=opts["study"]).first()
            if study is None:
                raise CommandError(f"no study with slug {opts['study']!r}")
        keys = ["concurrency", "top_n", "max_retries", "seed"]
        cot = ["samples", "temperature", "shots", "selector", "scorer", "scorer_endpoint", "reward_label"]
        keys += {"few-shot": ["shots", "passage_examples"], "cot": [*cot, "passage_examples"]}.get(opts["method"], [])
        for key in (*cot, "passage_examples"):
            if opts[key] is not None and key not in keys:
                raise CommandError(f"--{key.replace('_', '-')} does not apply to {opts['method']}")
        params = {k: opts[k] for k in keys if opts[k] is not None}
        try:
            return create_run(
                endpoint=endpoint,
                method=opts["method"],
                bank=bank,
                split=opts["split"],
                study=study,
                params=params,
                template=opts["template"],
            )
        except RunError as exc:
            raise CommandError(str(exc)) from exc

    def _resume(self, opts) -> BaselineRun:
        run = BaselineRun.objects.filter(pk=opts["resume"]).first()
        if run is None:
            raise CommandError(f"no baseline run {opts['resume']}")
        if run.status == BaselineRun.Status.DONE and not opts["retry_errors"]:
            raise CommandError(f"run {run.pk} is already done (use --retry-errors to score its failed items again)")
        try:
            return prepare_resume(run, retry_errors=opts["retry_errors"], force=opts["force"])
        except RunError as exc:
            raise CommandError(str(exc)) from exc

    def _describe(self, run: BaselineRun) -> str:
        scope = f"study {run.study.slug}" if run.study_id else f"bank {run.bank.name}"
        if run.study_id and run.bank_id:
            scope += f" (bank {run.bank.name})"
        if run.split:
            scope += f", split {run.split}"
        params = ", ".join(f"{k}={v}" for k, v in sorted(run.params.items()) if v not in ("", None))
        return (
            f"Baseline run {run.pk}: {run.method} on {scope} with endpoint {run.endpoint.name} "
            f"(template {run.template.name} {run.template_hash[:12]}; {params}); {run.total} items; "
            f"in the report: {model_method_of(run.method, run.params).label}"
        )

    def _print_summary(self, s: dict) -> None:
        out = self.stdout.write
        out(
            f"Accuracy: {_pct(s['accuracy'])} of {s['labelled']} answered labelled items "
            f"({_pct(s['accuracy_errors_as_wrong'])} counting errors as wrong)"
        )
        if s["errors"]:
            kinds = ", ".join(f"{k} {n}" for k, n in s["errors_by_kind"].items())
            out(f"Errors: {s['errors']} ({kinds})")
        else:
            out("Errors: none")
        ce = s["calibration_error"]
        bins = "; ".join(
            f"{b['centre']}%: n={b['n']}" + (f" acc {b['accuracy']:.1f}%" if b["n"] else "")
            for b in s["calibration_bins"]
        )
        out(f"Calibration error: {'n/a' if ce is None else f'{ce:.1f} points'} (nearest of 25/42/60/80/100; {bins})")
        out(f"Mean confidence: {_pct(s['mean_confidence'])}")
        subjects = s["accuracy_by_subject"]
        if subjects:
            out("Accuracy by subject:")
            width = max(len(name) for name in subjects)
            for name, row in subjects.items():
                out(f"  {name:<{width}}  {row['accuracy']:5.1f}%  (n={row['n']})")
