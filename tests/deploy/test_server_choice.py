"""One web server everywhere: `make run`, the image's web role and the servers the tests and benchmarks start
(oversight_dev/servers.py) run the same program with the same options, so what the benchmarks measure and the
tests exercise is what a researcher and a deployment serve with."""

import re
from pathlib import Path

from oversight_dev.servers import DEFAULT, web_command

REPO = Path(__file__).resolve().parents[2]


def options(words: list[str]) -> list[str]:
    """The server's options, without its address (which differs by design) and the harnesses' own choices of
    event loop and log level."""
    kept, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in {"--host", "--port", "-b", "-p", "--bind", "--loop", "--log-level"}:
            skip = True
        else:
            kept.append(word)
    return kept


def test_make_run_the_image_and_the_harnesses_serve_with_the_same_server_and_options():
    argv = web_command(DEFAULT, "127.0.0.1", 8000)
    expected = options(argv[argv.index(DEFAULT) + 1 :])
    assert expected[-1] == "oversight.asgi:application" and "--ws" in expected

    makefile = (REPO / "Makefile").read_text()
    run_recipe = makefile.split("\nrun: $(VENV)/.installed", 1)[1].split("\n\n", 1)[0]
    make_line = re.search(rf"\$\(VENV\)/bin/{DEFAULT} (.*)", run_recipe)
    assert make_line, f"make run does not start {DEFAULT}"
    assert options(make_line.group(1).split()) == expected

    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    web_role = re.search(rf"exec {DEFAULT} (.*?) ;;", dockerfile, re.S)
    assert web_role, f"the image's web role does not exec {DEFAULT}"
    words = web_role.group(1).replace("\\\n", " ").replace('"$@"', "").split()
    assert options(words) == expected
