"""Test a model endpoint from the shell: health, /info (served model and limits), a one-line chat, latency."""

import asyncio
import json

from django.core.management.base import BaseCommand, CommandError

from oversight.assistant.backends import probe, request_for_endpoint
from oversight.core.models import ModelEndpoint


class Command(BaseCommand):
    help = "Check that a model endpoint answers, and show the model it serves and its limits."

    def add_arguments(self, parser):
        parser.add_argument("name", help="the endpoint's name")

    def handle(self, *args, name, **options):
        endpoint = ModelEndpoint.objects.filter(name=name).first()
        if endpoint is None:
            known = ", ".join(ModelEndpoint.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No endpoint named {name!r} (known: {known}).")
        result = asyncio.run(probe(request_for_endpoint(endpoint)))
        info = result.get("info") or {}
        self.stdout.write(f"Endpoint {endpoint} ({endpoint.get_kind_display()})")
        self.stdout.write(f"  healthy:  {result['healthy']}")
        if info:
            limits = {
                k: info.get(k)
                for k in (
                    "model_id",
                    "max_input_tokens",
                    "max_input_length",
                    "max_total_tokens",
                    "max_concurrent_requests",
                    "version",
                )
                if info.get(k) is not None
            }
            self.stdout.write(f"  serves:   {json.dumps(limits)}")
        if result.get("reply") is not None:
            self.stdout.write(f"  reply:    {result['reply']!r} in {result['latency_ms']} ms")
        for check in result.get("checks", []):
            status = check["status"] if check["status"] is not None else "no answer"
            self.stdout.write(f"  {check['method']:<5} {check['url']} → {status}: {check['error'] or 'ok'}")
        if result.get("error") or not result["healthy"]:
            raise CommandError(result["error"] or "The server answered, but /health says it is not healthy.")
