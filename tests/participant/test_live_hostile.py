"""Hostile links through the real server (granian on the embedded default), not only Django's test client."""

import http.client
import socket
from urllib.parse import urlencode

import pytest

from tests.live_server import live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with live_server(tmp_path_factory.mktemp("hostile-server")) as running:
        yield running


def get(server, path: str) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def test_a_nul_in_a_prolific_parameter_gets_the_clear_400_through_the_server(server):
    status, body = get(server, "/s/demo/?PROLIFIC_PID=a%00b")
    assert status == 400 and "NUL character" in body and "Traceback" not in body


def test_three_5000_character_parameters_get_the_clear_400_through_the_server(server):
    query = urlencode({"PROLIFIC_PID": "p" * 5000, "STUDY_ID": "s" * 5000, "SESSION_ID": "x" * 5000})
    status, body = get(server, f"/s/demo/?{query}")
    assert status == 400 and "5,000 characters long; at most 200" in body


def test_three_10000_character_parameters_get_an_answer_from_the_server(server):
    # A request line past the server's own limit: granian answers it (a 4xx), where daphne used to hang up.
    query = urlencode({"PROLIFIC_PID": "p" * 10_000, "STUDY_ID": "s" * 10_000, "SESSION_ID": "x" * 10_000})
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(f"GET /s/demo/?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4")), reply[:100]
