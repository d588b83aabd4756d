"""The viewer's pages over HTTP, without a browser."""

import threading

import pytest
import requests

from respan_core import Respan, propagate_attributes, viewer, workflow


@pytest.fixture
def site(tmp_path):
    store = str(tmp_path / "t.sqlite3")
    client = Respan(local_store=store)

    @workflow(name="<img src=x onerror=alert(1)>")
    def hostile():
        with propagate_attributes(customer_identifier="<b>c</b>"):
            client.tracer.start_span("inner").end()

    hostile()
    client.shutdown()
    server = viewer.serve(store, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pages_escape_what_they_show(site):
    page = requests.get(site).text

    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "&lt;b&gt;c&lt;/b&gt;" in page


def test_a_page_asked_for_by_another_host_name_is_refused(site):
    response = requests.get(site, headers={"Host": "evil.example"})

    assert response.status_code == 403
    assert "onerror" not in response.text
