"""Development tooling for oversight: test and benchmark tools that must never ship with the product.

`faketgi` and `tgiwire` (a fake text-generation-inference server and its wire format), `bots` (simulated
participants, and the `run_bots` command), `synthetic` (studies with a known truth for the analysis tests and
bench/analytics.py).

This package sits beside `oversight/`, not inside it: the wheel and the production image hold only `oversight`
(pyproject's packages.find and deploy/Dockerfile's COPY set; tests/deploy/test_dockerfile.py checks both), and
nothing in `oversight/` imports it. It is importable when running from the repository (manage.py, pytest,
bench/, `python -m oversight_dev.faketgi`); the settings add it to INSTALLED_APPS only where it is found, so
`manage.py run_bots` exists in a development checkout and nowhere else.
"""
