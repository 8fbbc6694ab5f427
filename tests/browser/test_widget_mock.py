"""The ComfyUI extension (web/scalingar_widget.js) in headless Chromium against
mock app/api modules: widget creation, routing of live events by node id,
final summary via onExecuted, reload from node properties, subgraph ids and
restored outputs. Runs without a ComfyUI server."""

from __future__ import annotations


def test_widget_wiring_with_mock_comfy(browser, static_server, artifacts):
    browser.navigate(f"{static_server}/tests/browser/widget_harness.html")
    r = browser.wait_for("window.__result", timeout=30)
    browser.screenshot(str(artifacts / "widget_mock.png"))
    errors = [m for m in browser.console_messages() if m.startswith(("exception", "console.error"))]
    assert "error" not in r, r.get("error")
    assert not errors, errors

    assert r["extensionNames"] == ["ScalingAR.ConfidencePlot"]
    assert r["otherPatched"] is False, "only ScalingARSampler nodes get the plot"
    w = r["widget"]
    assert w["found"] and w["serialize"] is False and w["optSerialize"] is False, w
    assert w["minHeight"] >= 150 and w["width"] >= 420, w

    empty, live, final = r["empty"], r["live"], r["final"]
    assert empty["drawn"] == "1" and empty["lastStep"] == "-1" and empty["events"] == "0"
    # 16 events every 4th step for node 7 (the node-8 copies must be ignored).
    assert live["events"] == "16" and live["lastStep"] == "60" and live["final"] == "0", live
    assert live["colored"] > empty["colored"] + 500, (empty, live)
    assert final["final"] == "1" and final["lastStep"] == "127", final
    assert final["colored"] > live["colored"], (live, final)
    assert final["stored"] and final["stored"] <= 128 + 8

    # A new run's first event clears the finished plot.
    assert r["rerun"]["final"] == "0" and r["rerun"]["lastStep"] == "0"
    reloaded = r["reloaded"]
    assert reloaded["final"] == "1" and reloaded["lastStep"] == "127" and reloaded["events"] == "0"
    assert reloaded["colored"] > empty["colored"] + 500
    assert r["subgraphLive"]["events"] == "5" and r["subgraphLive"]["lastStep"] == "16"
    assert r["subgraphRestored"]["final"] == "1"
    assert r["survivedBadInput"] is True
