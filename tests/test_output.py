"""output: what people see while `up` pulls an image."""

import io

from rich.console import Console

from chromactl.output import ProgressReporter


def test_finished_layers_never_show_unknown_byte_counts():
    reporter = ProgressReporter(as_json=False)
    buffer = io.StringIO()
    reporter._err = Console(file=buffer, force_terminal=True, width=120, color_system=None)
    events = [
        {"id": "aaa", "status": "Pulling fs layer"},
        {"id": "aaa", "status": "Downloading", "progressDetail": {"current": 500, "total": 1000}},
        {"id": "aaa", "status": "Download complete"},
        {"id": "aaa", "status": "Pull complete"},
        {"id": "bbb", "status": "Already exists"},
    ]
    for event in events:
        reporter.pull_event(event)
    reporter.pull_done()
    text = buffer.getvalue()
    assert "/?" not in text, text
    assert "aaa Pull complete" in text and "bbb Already exists" in text
    assert "1.0/1.0 kB" in text  # the last byte count known for a layer stays
