"""Simulated participants against a running server, or in this process (see docs/bots.md and oversight_dev/bots.py)."""

import argparse
import asyncio
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from oversight_dev.bots import BotConfig, check_run, format_summary, parse_accuracy, run_bots, run_bots_in_process


def _fraction(value: str) -> float:
    x = float(value)
    if not 0 <= x <= 1:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return x


def _accuracy(value: str) -> tuple[float, dict[str, float]]:
    try:
        return parse_accuracy(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return n


def _positive(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return n


class Command(BaseCommand):
    help = (
        "Run N bot participants through a study over the real HTTP interface of a running server (same "
        "database as this command), or with --in-process through the same service functions without a server; "
        "then check the database. Exits non-zero on any error."
    )

    def add_arguments(self, parser):
        parser.add_argument("slug", help="the live study's slug (e.g. demo)")
        parser.add_argument("--participants", "-n", type=_positive, required=True, help="number of bots")
        parser.add_argument(
            "--accuracy",
            type=_accuracy,
            default=(0.6, {}),
            help="probability of choosing the gold option (catch items: always): one number, or "
            "per condition kind, e.g. unaided=0.5,assisted=0.75 (others: 0.6) [0.6]",
        )
        parser.add_argument("--seed", type=int, default=0, help="bots are bot-<seed>-<i>; decisions are seeded")
        parser.add_argument("--concurrency", "-c", type=_positive, default=10, help="bots working at once [10]")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="the running server")
        parser.add_argument(
            "--timeout-rate",
            type=_fraction,
            default=0.05,
            help="share of timed items left to run out with a selection made [0.05]",
        )
        parser.add_argument("--think-ms", type=float, default=0.0, help="mean thinking time per item [0]")
        parser.add_argument(
            "--no-js",
            action="store_true",
            help="navigate as a browser without JavaScript (POST → 303 → GET) instead of as the pages' htmx does "
            "(one round trip per answer)",
        )
        parser.add_argument("--request-timeout", type=float, default=30.0, help="seconds per HTTP request")
        parser.add_argument(
            "--messages-per-item",
            type=_non_negative,
            default=1,
            help="chat messages a bot sends on each assisted item before answering; 0: no chat [1]",
        )
        parser.add_argument(
            "--reply-timeout",
            type=float,
            default=60.0,
            help="seconds from sending a chat message to its final reply [60]",
        )
        parser.add_argument(
            "--in-process",
            action="store_true",
            help="no server: run the bots here, one after another, through the service functions "
            "the participant views call (no chat: needs --messages-per-item 0)",
        )
        parser.add_argument(
            "--check",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="verify the bots' records in the database afterwards [on]",
        )
        parser.add_argument("--summary-json", type=Path, help="also write the summary as JSON to this file")

    def handle(self, *args, **options):
        from oversight.core.models import Study

        slug = options["slug"]
        study = Study.objects.filter(slug=slug).first()
        if study is None:
            raise CommandError(f"No study {slug!r} in this database (is the server using the same one?)")
        if not study.is_live:
            self.stderr.write(self.style.WARNING(f"Study {slug!r} is {study.status}: bots will be turned away."))
        accuracy, condition_accuracy = options["accuracy"]
        if options["in_process"] and options["messages_per_item"]:
            raise CommandError("in-process bots do not chat: add --messages-per-item 0")
        config = BotConfig(
            slug=slug,
            participants=options["participants"],
            accuracy=accuracy,
            condition_accuracy=condition_accuracy,
            seed=options["seed"],
            concurrency=options["concurrency"],
            base_url=options["base_url"].rstrip("/"),
            timeout_rate=options["timeout_rate"],
            think_ms=options["think_ms"],
            request_timeout_s=options["request_timeout"],
            messages_per_item=options["messages_per_item"],
            reply_timeout_s=options["reply_timeout"],
            in_process=options["in_process"],
            javascript=not options["no_js"],
        )
        report = run_bots_in_process(config) if options["in_process"] else asyncio.run(run_bots(config))
        check = check_run(report) if options["check"] else None

        for error in report.errors:
            self.stderr.write(self.style.ERROR(f"ERROR {error}"))
        for result in report.results:
            for reply in result.replies:
                if reply.failed or reply.lost_chars:
                    self.stderr.write(
                        self.style.ERROR(
                            f"CHAT bot {result.bot} ({result.pid}) trial #{reply.position} {reply.client_id}: "
                            f"{reply.status}, {reply.lost_chars} characters lost {reply.error}".rstrip()
                        )
                    )
        if check is not None:
            for problem in check.problems:
                self.stderr.write(self.style.ERROR(f"CHECK {problem}"))
        for line in format_summary(report, check):
            self.stdout.write(line)

        if options["summary_json"]:
            summary = report.summary()
            summary["check"] = (
                None
                if check is None
                else {
                    "ok": check.ok,
                    "problems": check.problems,
                    "statuses": dict(check.statuses),
                    "trials": check.trials,
                    "chat_messages": check.chat_messages,
                }
            )
            summary["error_details"] = [str(e) for e in report.errors]
            summary["chat"]["failed_details"] = [
                f"bot {r.bot} ({r.pid}) trial #{c.position} {c.client_id}: {c.status} {c.error}".rstrip()
                for r in report.results
                for c in r.replies
                if c.failed or c.lost_chars
            ]
            options["summary_json"].write_text(json.dumps(summary, indent=2))

        failures = []
        if report.errors:
            failures.append(f"{len(report.errors)} bot error(s)")
        chat = report.chat_summary()
        if chat["failed_replies"]:
            failures.append(f"{chat['failed_replies']} failed chat reply(ies)")
        if chat["lost_chars"] or chat["mismatched_replies"]:
            failures.append(
                f"{chat['lost_chars']} streamed character(s) lost, "
                f"{chat['mismatched_replies']} reply(ies) differ from the stored text"
            )
        if check is not None and not check.ok:
            failures.append(f"{len(check.problems)} consistency problem(s)")
        if failures:
            raise CommandError("; ".join(failures))
        self.stdout.write(self.style.SUCCESS("All bots finished without errors."))
