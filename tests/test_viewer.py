"""The trace viewer in a real headless browser (Debian's chromium and chromedriver), showing
the demo's own traces and a trace whose prompt is HTML."""

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import litellm
import pytest

from respan_core import Respan, propagate_attributes, task, viewer, wire, workflow
from respan_core.local_store import recent_traces

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
HOSTILE_PROMPT = "<script>document.title='owned'</script><b>not bold</b>"

if not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"):
    pytest.skip(
        "the viewer test needs Debian's chromium and chromium-driver "
        "(apt-get install chromium chromium-driver); CI installs them",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory, llm):
    """The demo's traces, and one more whose prompt is HTML, in one local store."""
    data_dir = tmp_path_factory.mktemp("demo")
    subprocess.run(
        [sys.executable, str(ROOT / "example_projects" / "demo.py"), "--data-dir", str(data_dir)],
        check=True, capture_output=True, timeout=300,
    )
    path = str(data_dir / "traces.sqlite3")

    os.environ.update(OPENAI_BASE_URL=llm.base_url, OPENAI_API_KEY="sk-stand-in")
    client = Respan(local_store=path)
    from openinference.instrumentation.litellm import LiteLLMInstrumentor

    instrumentor = LiteLLMInstrumentor()
    client.instrument(instrumentor)

    @task(name="ask")
    def ask(question):
        return litellm.completion(model="gpt-4.1-nano", messages=[{"role": "user",
                                                                   "content": question}])

    @workflow(name="hostile_prompt")
    def handle():
        with propagate_attributes(customer_identifier="mallory"):
            ask(HOSTILE_PROMPT)

    handle()
    client.shutdown()
    instrumentor.uninstrument()
    return path


@pytest.fixture(scope="module")
def site(store):
    server = viewer.serve(store, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _by(kind):
    from selenium.webdriver.common.by import By

    return getattr(By, kind)


def test_the_list_shows_the_demos_traces(site, browser):
    browser.get(site)

    rows = browser.find_elements(_by("CSS_SELECTOR"), "tr.trace")
    workflows = [row.find_elements(_by("TAG_NAME"), "td")[1].text for row in rows]
    assert workflows.count("POST /chat/<int:conversation_id>/") == 2
    demo_row = next(r for r in rows if "/chat/" in r.text)
    cells = [cell.text for cell in demo_row.find_elements(_by("TAG_NAME"), "td")]
    assert cells[2] == "1"  # the demo user's customer identifier
    assert cells[5] == "2"  # LLM calls: the view's and the task's


def test_a_click_opens_the_waterfall_with_a_bar_per_span(site, browser, tmp_path):
    browser.get(site)
    browser.find_element(_by("LINK_TEXT"), "POST /chat/<int:conversation_id>/").click()

    bars = browser.find_elements(_by("CSS_SELECTOR"), ".waterfall .bar")
    assert len(bars) == 4  # request, its LLM call, the Celery task, the task's LLM call
    assert len(browser.find_elements(_by("CSS_SELECTOR"), ".bar.llm")) == 2
    browser.save_screenshot(str(tmp_path / "trace.png"))


def test_a_prompt_containing_html_is_shown_as_text(site, browser):
    browser.get(f"{site}/?customer=mallory")
    (row,) = browser.find_elements(_by("CSS_SELECTOR"), "tr.trace")
    row.find_element(_by("LINK_TEXT"), "hostile_prompt.workflow").click()

    llm_span = next(
        d for d in browser.find_elements(_by("CSS_SELECTOR"), "details.span")
        if d.find_element(_by("TAG_NAME"), "summary").text.startswith("completion")
    )
    llm_span.find_element(_by("TAG_NAME"), "summary").click()

    message = llm_span.find_element(_by("CSS_SELECTOR"), ".message")
    assert HOSTILE_PROMPT in message.text
    assert browser.find_elements(_by("TAG_NAME"), "script") == []
    assert message.find_elements(_by("TAG_NAME"), "b")[1:] == []  # only the role is bold
    assert browser.title != "owned"


def _rows(browser):
    return [
        [cell.text for cell in row.find_elements(_by("TAG_NAME"), "td")]
        for row in browser.find_elements(_by("CSS_SELECTOR"), "tr.trace")
    ]


def test_filtering_by_customer_and_thread(site, browser, store):
    browser.get(f"{site}/?customer=mallory")
    assert [row[1] for row in _rows(browser)] == ["hostile_prompt.workflow"]

    browser.get(f"{site}/?customer=1")
    demo_rows = _rows(browser)
    assert {row[2] for row in demo_rows} == {"1"}
    assert [row[1] for row in demo_rows].count("POST /chat/<int:conversation_id>/") == 2

    thread = next(
        t.first(wire.THREAD_IDENTIFIER) for t in recent_traces(store, limit=100)
        if t.first(wire.THREAD_IDENTIFIER)
    )
    browser.get(f"{site}/?thread={thread}")
    assert {row[3] for row in _rows(browser)} == {thread[:12]}
    assert "hostile_prompt.workflow" not in [row[1] for row in _rows(browser)]

    browser.get(f"{site}/?customer=nobody")
    assert _rows(browser) == []
