"""`manage.py prolific_bonus <slug> --per-correct 0.10 [--out FILE] [--statuses FILE]`: Prolific bonus payments.

Writes Prolific's bulk-bonus lines (`<PROLIFIC_PID>,<amount>`, no header) to FILE or standard output, and with
--statuses a CSV of every participant's submission status, action and bonus. The rule is in
oversight/exports/payments.py and docs/export.md.
"""

from decimal import Decimal
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from oversight.core.models import Study
from oversight.exports.payments import (
    parse_amount,
    payment_rows,
    prolific_bonus_lines,
    unpayable,
    write_prolific_bonus_csv,
    write_statuses_csv,
)


class Command(BaseCommand):
    help = (
        "Prolific bulk-bonus file for a study: a fixed amount per correct scored answer, for completed, non-pilot "
        "participants (see docs/export.md). Also, with --statuses, who to approve."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="The study's slug")
        parser.add_argument(
            "--per-correct",
            required=True,
            help="Bonus per correct scored answer, in the Prolific study's currency (e.g. 0.10)",
        )
        parser.add_argument("--out", type=Path, help="Write the bonus lines here (default: standard output)")
        parser.add_argument(
            "--statuses",
            type=Path,
            help="Also write every participant's status, action (approve / screened_out / "
            "not_finished / pilot) and bonus as CSV",
        )
        parser.add_argument(
            "--withhold-excluded",
            action="store_true",
            help="No bonus for participants with an active exclusion (default: they are paid)",
        )

    def handle(self, *args, slug, per_correct, out, statuses, withhold_excluded, **options):
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"No study with the slug “{slug}”.")
        try:
            amount = parse_amount(per_correct)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        rows = payment_rows(study=study, per_correct=amount, withhold_excluded=withhold_excluded)
        if out is None:
            write_prolific_bonus_csv(rows, self.stdout)
        else:
            with open(out, "w", encoding="utf-8", newline="") as f:
                write_prolific_bonus_csv(rows, f)
        if statuses is not None:
            with open(statuses, "w", encoding="utf-8", newline="") as f:
                write_statuses_csv(rows, f)
        lines = prolific_bonus_lines(rows)
        total = sum((r.bonus for r in rows if r.prolific_pid), Decimal("0"))
        self.stderr.write(f"{len(lines)} Prolific bonus line(s), {total:.2f} in total, at {amount} per correct answer.")
        for r in unpayable(rows):
            self.stderr.write(
                f"  {r.participant_id} ({r.external_id or 'anonymous'}) is owed {r.bonus:.2f} but "
                "did not join through Prolific: pay them another way."
            )
