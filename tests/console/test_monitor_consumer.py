"""The researcher's monitor socket: who may watch, batching, and rows pushed as the page renders them."""

import re

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from oversight.core.models import Collaborator
from oversight.realtime.routing import websocket_urlpatterns
from tests.console.test_run import answer_all, enrol, url
from tests.factories import make_study

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

APP = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
# A row of the page's table: its participant id and its progress cell ("done/total").
ROW = re.compile(r'<tr data-id="(?P<id>\d+)".*?<td>(?P<done>\d+)/(?P<total>\d+)</td>', re.S)


def progress(html: str) -> dict[int, tuple[int, int]]:
    return {int(m["id"]): (int(m["done"]), int(m["total"])) for m in ROW.finditer(html)}


async def watch(user, study) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(APP, f"/ws/monitor/{study.slug}/")
    ws.scope["user"] = user  # as the session middleware would have resolved it
    connected, _ = await ws.connect()
    assert connected
    return ws


async def updates(ws, quiet_s=2.5) -> list[dict]:
    received = []
    while not await ws.receive_nothing(timeout=quiet_s):  # (a timed-out receive would cancel the app)
        received.append(await ws.receive_json_from())
    return received


def busy(study, n=10):
    for i in range(n):
        answer_all(enrol(study, f"p{i}"))  # ~7 events each


async def test_the_monitor_socket_batches_many_changes_into_few_messages(alice):
    study = await database_sync_to_async(make_study)(owner=alice, n_items=3)
    ws = await watch(alice, study)
    snapshot = await ws.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot" and progress(snapshot["rows"]) == {}
    assert "No participants yet." in snapshot["rows"]

    await database_sync_to_async(busy)(study)
    received = await updates(ws)
    assert 1 <= len(received) <= 3, f"{len(received)} messages for ~70 events"
    rows = {pid: p for message in received for pid, p in progress(message["rows"]).items()}
    assert len(rows) == 10 and all(done == total == 6 for done, total in rows.values())
    await ws.disconnect()


async def test_the_monitor_socket_refuses_an_outsider(charlie, alice):
    study = await database_sync_to_async(make_study)(owner=alice)
    ws = WebsocketCommunicator(APP, f"/ws/monitor/{study.slug}/")
    ws.scope["user"] = charlie
    connected, code = await ws.connect()
    assert not connected and code == 4403


def page_parts(user, study) -> tuple[str, str]:
    client = Client()
    client.force_login(user)
    page = client.get(url("monitor", study)).content.decode()
    rows = re.search(r"<tbody>(.*)</tbody>", page, re.S).group(1)
    summary = re.search(r'<section class="cards" id="summary">(.*?)</section>', page, re.S).group(1)
    return rows.strip(), summary.strip()


async def test_the_socket_pushes_the_rows_and_summary_the_page_renders(alice):
    study = await database_sync_to_async(make_study)(owner=alice, n_items=2)
    await database_sync_to_async(busy)(study, n=3)
    ws = await watch(alice, study)
    snapshot = await ws.receive_json_from(timeout=5)
    rows, summary = await database_sync_to_async(page_parts)(alice, study)
    assert len(progress(rows)) == 3 and "Assisted 100%" in rows
    assert (snapshot["rows"].strip(), snapshot["summary"].strip()) == (rows, summary)
    await ws.disconnect()


async def test_a_blind_collaborator_gets_no_accuracy_in_any_update(alice, bob):
    study = await database_sync_to_async(make_study)(owner=alice, n_items=2)
    await database_sync_to_async(Collaborator.objects.create)(study=study, user=bob, blind=True)
    owner, blind = await watch(alice, study), await watch(bob, study)
    await database_sync_to_async(busy)(study, n=3)
    seen = {}
    for name, ws in (("owner", owner), ("blind", blind)):
        seen[name] = [await ws.receive_json_from(timeout=5), *await updates(ws)]
        assert {m["type"] for m in seen[name]} == {"snapshot", "rows"}
        await ws.disconnect()
    assert "Assisted 100%" in seen["owner"][-1]["rows"] and "summary-accuracy" in seen["owner"][-1]["summary"]
    for message in seen["blind"]:
        assert "%" not in message["rows"]
        assert "summary-accuracy" not in message["summary"] and "blind to accuracy" in message["summary"]
    assert progress(seen["blind"][-1]["rows"]) == progress(seen["owner"][-1]["rows"])
