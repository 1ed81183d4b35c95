"""The console pages of issue 13 (items 7, 8, 9) in a real browser (Debian chromium via Playwright), 1366×900.

Against daphne on the seeded demo: the participant links and their Copy button (with the clipboard API, and as
a plain selectable field without JavaScript), launching through the confirmation page without JavaScript and
the launch in the study's log, a failed endpoint test with what it tried, and the console's inputs styled alike
(login, exclusions, filters). Screenshots go to test-artifacts/browser/console-pages-*.png.
"""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install -y chromium)"),
]
RESEARCHER = ("researcher", "oversight-demo")
VIEWPORT = {"width": 1366, "height": 900}
WAIT_MS = 20_000


@pytest.fixture(scope="module")
def server(browser_server):
    browser_server.query(
        "from django.contrib.auth import get_user_model\n"
        "from oversight.core.models import ModelEndpoint, Study\n"
        "from oversight.core.services.studies import study_clone\n"
        "from oversight.core.services.participants import participant_join\n"
        "owner = get_user_model().objects.get(username='researcher')\n"
        "study_clone(study=Study.objects.get(slug='demo'), slug='to-launch', owner=owner)\n"
        "participant_join(study=Study.objects.get(slug='demo'), params={'pid': 'p1'}, consent=True)\n"
        "ModelEndpoint.objects.create(name='Lab GPU (down)', kind='tgi', base_url='http://127.0.0.1:9',\n"
        "                             request_timeout_s=2)\n"
    )
    return browser_server


def logged_in(chromium, server, **context_args):
    context = chromium.new_context(viewport=VIEWPORT, **context_args)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.page_errors = []
    page.on("pageerror", lambda exc: page.page_errors.append(str(exc)))
    page.goto(f"{server.base_url}/console/login/")
    page.fill("#id_username", RESEARCHER[0])
    page.fill("#id_password", RESEARCHER[1])
    with page.expect_navigation():
        page.click("main button[type=submit]")
    return context, page


def test_the_copy_button_puts_the_absolute_prolific_link_on_the_clipboard(chromium, server, artifacts):
    context, page = logged_in(chromium, server)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base_url)
    page.goto(f"{server.base_url}/console/studies/demo/")
    link = page.input_value("#link-prolific")
    assert link == (
        f"{server.base_url}/s/demo/?PROLIFIC_PID={{{{%PROLIFIC_PID%}}}}"
        "&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
    )
    assert page.input_value("#link-open") == f"{server.base_url}/s/demo/"
    button = page.locator("button[data-copy=link-prolific]")
    assert button.is_visible()
    button.click()
    page.wait_for_function("() => document.querySelector('button[data-copy=link-prolific]').textContent === 'Copied'")
    assert page.evaluate("() => navigator.clipboard.readText()") == link
    page.screenshot(path=str(artifacts / "console-pages-study.png"), full_page=True)
    assert not page.page_errors
    context.close()


def test_without_javascript_the_link_is_a_field_to_select_and_the_launch_still_asks_first(chromium, server):
    context, page = logged_in(chromium, server, java_script_enabled=False)
    page.goto(f"{server.base_url}/console/studies/to-launch/")
    assert not page.locator("button[data-copy=link-open]").is_visible()  # no button that could not work
    assert page.get_attribute("#link-open", "readonly") is not None
    assert page.input_value("#link-open") == f"{server.base_url}/s/to-launch/"
    page.click("main >> text=Launch…")
    page.wait_for_url(re.compile(r"/console/studies/to-launch/launch$"))
    assert "Launching freezes the study" in page.inner_text("main")
    assert server.query(
        "from oversight.core.models import Study\nresult = Study.objects.get(slug='to-launch').status"
    ) == ("draft")
    with page.expect_navigation():
        page.click("text=Launch now")
    assert page.url.endswith("/console/studies/to-launch/")
    log = page.inner_text("section.study-log-card")
    assert re.search(r"researcher\s+Launched\s+Launched: \d+ items drawn, manifest frozen", log), log
    assert server.query(
        "from oversight.core.models import Study\nresult = Study.objects.get(slug='to-launch').status"
    ) == ("live")
    context.close()


def test_a_failed_endpoint_test_shows_each_request_its_status_and_error(chromium, server, artifacts):
    context, page = logged_in(chromium, server)
    page.goto(f"{server.base_url}/console/endpoints/")
    page.locator("tr", has_text="Lab GPU (down)").locator("button", has_text="Test").click()
    page.wait_for_selector(".probe.bad .probe-checks")
    row = page.locator(".probe-checks tbody tr").first
    cells = [c.strip() for c in row.locator("td").all_inner_texts()]
    assert cells[0] == "GET http://127.0.0.1:9/health" and cells[1] == "—", cells
    assert "not reachable" in cells[2] and "Connection refused" in cells[2], cells
    assert page.url.endswith("/console/endpoints/")  # swapped in place by htmx, no reload
    page.screenshot(path=str(artifacts / "console-pages-endpoint-failed.png"), full_page=True)
    context.close()


STYLE_JS = """(selector) => {
  const s = getComputedStyle(document.querySelector(selector));
  return {radius: s.borderTopLeftRadius, padding: parseFloat(s.paddingLeft), color: s.borderTopColor,
          font: parseFloat(s.fontSize)};
}"""


@pytest.mark.parametrize(
    "path,selectors",
    [
        ("/console/login/", ["#id_username", "#id_password"]),
        ("/console/studies/demo/exclusions/", ["select[name=rule]", "input[name=k]", "input[name=min_seconds]"]),
        ("/console/banks/1/", ["input[name=q]", "select[name=subject]", "select[name=difficulty]"]),
        ("/console/studies/demo/participants/{pid}/", [".exclude-form input[name=reason]"]),
    ],
)
def test_login_exclusion_and_filter_inputs_share_the_console_s_style(chromium, server, artifacts, path, selectors):
    if "/login/" in path:
        context = chromium.new_context(viewport=VIEWPORT)
        page = context.new_page()
    else:
        context, page = logged_in(chromium, server)
    pid = server.query("from oversight.core.models import Participant\nresult = Participant.objects.first().pk")
    page.goto(server.base_url + path.format(pid=pid))
    for selector in selectors:
        style = page.evaluate(STYLE_JS, selector)
        # The browser's own inputs: square corners, 1-2 px of padding, dark grey border, 13.3 px text.
        assert style == {"radius": "6px", "padding": pytest.approx(9.35, abs=0.1), "color": "rgb(221, 225, 232)",
                         "font": pytest.approx(16.15, abs=0.1)}, (selector, style)  # fmt: skip
    name = re.sub(r"\W+", "-", path.strip("/").format(pid="p"))
    page.screenshot(path=str(artifacts / f"console-pages-{name}.png"), full_page=True)
    context.close()
