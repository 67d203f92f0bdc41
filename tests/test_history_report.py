"""flowprobe report: text, markdown and one self-contained HTML file from a
history_dir, and a user's template fed the same data."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from flowprobe.store.sink import HistorySink
from history_records import DAY_START_MS, HOUR_MS, Day
from test_history_store import INTERFACES, write

pytest.importorskip("jinja2", reason="flowprobe report needs jinja2 (the report extra)")
ARTIFACTS = Path(__file__).resolve().parent.parent / "build" / "artifacts"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    directory = tmp_path_factory.mktemp("report") / "history"
    day = Day(6000, seed=5)
    sink = HistorySink(str(directory), 16 << 20, 5, INTERFACES)
    sink.start()
    write(sink, day)
    sink.finish()
    return directory, day


def report(store, *args):
    directory, _ = store
    done = subprocess.run([sys.executable, "-m", "flowprobe", "report", "--dir", str(directory),
                           "--since", str(DAY_START_MS), "--until",
                           str(DAY_START_MS + 24 * HOUR_MS), *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_text_report_names_the_busiest_host_and_every_protocol(store):
    _, day = store
    text = report(store)
    busiest = day.per_host().most_common(1)[0][0]
    top = text.split("Top hosts (either end)\n", 1)[1].splitlines()[0]
    assert busiest in top
    for protocol in ("tcp", "udp", "icmp"):
        assert re.search(rf"^  {protocol} ", text, re.M)
    assert "Flows by duration/log" in text and "Anomalies\n  none" in text


def test_the_html_report_is_one_file_with_inline_charts(store):
    html = report(store, "--format", "html")
    assert html.count("<svg") == 4           # the trend and three histograms
    # nothing to fetch: no script, no external stylesheet or image
    assert "<script" not in html
    assert not re.search(r'(src|href)="(?!#)', html)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "history-report.html").write_text(html)
    chromium = shutil.which("chromium")
    if chromium:   # a screenshot beside it, as the History page's
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        f"--screenshot={ARTIFACTS / 'history-report.png'}",
                        "--window-size=1000,2600", (ARTIFACTS / "history-report.html").as_uri()],
                       capture_output=True, timeout=60,
                       env={"HOME": "/tmp", "PATH": "/usr/bin:/bin"})
        assert (ARTIFACTS / "history-report.png").stat().st_size > 10000


def test_markdown_has_its_tables(store):
    markdown = report(store, "--format", "markdown")
    assert "| host | bytes | packets | flows |" in markdown


def test_a_users_template_gets_the_documented_data(store, tmp_path):
    _, day = store
    template = tmp_path / "mine.j2"
    template.write_text("{{ top_hosts[0].host }} {{ totals.flows }} {{ bucket_s }} "
                        "{{ histograms['bytes/log'] | length > 0 }}\n")
    out = report(store, "--template", str(template)).split()
    assert out[0] == day.per_host().most_common(1)[0][0]
    assert int(out[1]) == day.count and out[3] == "True"


def test_a_broken_template_is_a_clear_error(store, tmp_path):
    directory, _ = store
    template = tmp_path / "broken.j2"
    template.write_text("{{ no_such_thing }}")
    done = subprocess.run([sys.executable, "-m", "flowprobe", "report", "--dir", str(directory),
                           "--template", str(template)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "broken.j2" in done.stderr and "no_such_thing" in done.stderr
