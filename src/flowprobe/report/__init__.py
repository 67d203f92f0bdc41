"""`flowprobe report`: the history store's top talkers, protocols, ports,
trend, histograms and anomalies, rendered by jinja2 (text, markdown, or one
self-contained HTML file with inline SVG charts) or by a user's template,
which gets the same data (documented in report_data()).

jinja2 is imported here only, and only when a report is rendered: it is an
optional dependency (pip install 'flowprobe[report]'; on OpenWrt `opkg
install python3-jinja2`, which the flowprobe package does not pull in).
"""

import time
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"
FORMATS = ("text", "markdown", "html")
TOP = 20
HOUR_S = 3600


class ReportError(Exception):
    pass


def report_data(ask, since, until=None, anomalies=()):
    """What every template gets (ask(query) runs one query, as the control
    socket's `query` does):

        since_ms, until_ms, generated_ms   the span (Unix ms)
        totals       {bytes, packets, flows}
        top_hosts    [{host, bytes, packets, flows}] (either end), busiest first
        protocols    [{protocol, bytes, packets, flows}]
        ports        [{dst_port, ...}] the busiest destination ports
        interfaces   [{interface, ...}]
        trend        [{time, bytes, packets, flows}] per bucket_s, in time order
        trend_by_protocol  [{protocol, time, bytes, packets, flows}]
        bucket_s     the trend's bucket (about 48 of them in the span)
        histograms   {"bytes/log": [{"bytes/log": floor, flows, ...}], "duration/log",
                      "packet_size/log"}: flows per decade
        anomalies    [{series, start_ms, end_ms, peak_bytes, expected_bytes}]
        skipped      sections left empty, each with why (a query past its deadline)
    """
    span = {"since": since}
    if until is not None:
        span["until"] = until
    skipped = []

    def groups(spec):
        """A query's groups; one that fails (the daemon's deadline on a big
        store) leaves its section empty and is named in skipped."""
        try:
            return ask(spec)["groups"]
        except Exception as e:   # ControlError or QueryError: said in the report
            skipped.append(f"{', '.join(spec.get('group_by', ['trend']))}: {e}")
            return []

    first = ask(dict(span, group_by=["host"], limit=TOP))   # its errors end the report
    since_ms, until_ms = first["since"], first["until"]
    by = {key: groups(dict(span, group_by=[key], limit=TOP))
          for key in ("protocol", "dst_port", "interface")}
    # about 48 bars: an hour each over two days and more, minutes over an hour
    bucket_s = max(60, min(HOUR_S, (until_ms - since_ms) // 1000 // 48 // 60 * 60))
    if (until_ms - since_ms) > 2 * 86400 * 1000:
        bucket_s = HOUR_S * max(1, (until_ms - since_ms) // 1000 // 48 // HOUR_S)
    trend = ask(dict(span, bucket=bucket_s, group_by=["protocol"], limit=1000))
    per_time = {}
    for row in trend["groups"]:
        total = per_time.setdefault(row["time"], {"time": row["time"], "bytes": 0,
                                                  "packets": 0, "flows": 0})
        for key in ("bytes", "packets", "flows"):
            total[key] += row[key]
    histograms = {key: sorted(groups(dict(span, group_by=[key], limit=20)),
                              key=lambda g, key=key: g[key])
                  for key in ("bytes/log", "duration/log", "packet_size/log")}
    return {
        "since_ms": since_ms, "until_ms": until_ms, "generated_ms": int(time.time() * 1000),
        "totals": {"bytes": trend["bytes"], "packets": trend["packets"],
                   "flows": trend["flows"]},
        "top_hosts": first["groups"], "protocols": by["protocol"],
        "ports": by["dst_port"], "interfaces": by["interface"],
        "trend": sorted(per_time.values(), key=lambda row: row["time"]),
        "trend_by_protocol": trend["groups"], "bucket_s": bucket_s,
        "histograms": histograms, "anomalies": list(anomalies), "skipped": skipped,
    }


def render(data, form="text", template=None):
    """The report as text; ReportError when jinja2 is missing or the
    template fails."""
    try:
        import jinja2
    except ImportError:
        raise ReportError("flowprobe report needs jinja2 (pip install jinja2; on OpenWrt: "
                          "opkg install python3-jinja2)") from None
    from flowprobe.cli import units
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(TEMPLATES)] + (
            [str(Path(template).resolve().parent)] if template else [])),
        autoescape=jinja2.select_autoescape(("html.j2",)), trim_blocks=True,
        lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    environment.filters.update(size=units.size, count=units.count, time=units.timestamp_ms,
                               bar=bar)
    environment.globals.update(chart=chart, bar=bar)
    try:
        name = Path(template).name if template else f"report.{_EXTENSIONS[form]}.j2"
        return environment.get_template(name).render(**data)
    except jinja2.TemplateError as e:
        raise ReportError(f"template {template or name}: {e}") from None


_EXTENSIONS = {"text": "txt", "markdown": "md", "html": "html"}


def bar(value, largest, width=30):
    """A text bar of value against largest."""
    if not largest:
        return ""
    return "#" * max(1 if value else 0, round(width * value / largest))


def chart(values, labels=(), width=640, height=160):
    """An inline SVG bar chart (no script, no external file): a report that
    can be mailed.  Returns markup; the html template marks it safe."""
    values = [max(0, v) for v in values]
    largest = max(values, default=0) or 1
    step = width / max(len(values), 1)
    bars = []
    for i, value in enumerate(values):
        h = (height - 20) * value / largest
        title = f"<title>{_escape(str(labels[i]))}: {value}</title>" if i < len(labels) else ""
        bars.append(f'<rect x="{i * step + 1:.1f}" y="{height - 20 - h:.1f}" '
                    f'width="{max(step - 2, 1):.1f}" height="{h:.1f}" fill="#4a7ebb">'
                    f"{title}</rect>")
    first = _escape(str(labels[0])) if labels else ""
    last = _escape(str(labels[-1])) if labels else ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img">{"".join(bars)}'
            f'<text x="0" y="{height - 4}" font-size="11">{first}</text>'
            f'<text x="{width}" y="{height - 4}" font-size="11" text-anchor="end">{last}</text>'
            "</svg>")


def _escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))
