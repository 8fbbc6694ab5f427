"""Render the pure plot module in headless Chromium on a static page (no ComfyUI)
and check real pixels: coloured trajectory lines where there is data, none
where there is not."""

from __future__ import annotations

from browser_support import CANVAS_STATS_JS


def test_demo_page_draws_lines(browser, static_server, artifacts):
    browser.navigate(f"{static_server}/tests/browser/demo.html")
    browser.wait_for("window.__demoDone === true", timeout=30)
    stats = {
        name: browser.evaluate(f"({CANVAS_STATS_JS})('#{name}')")
        for name in ("final", "live", "empty", "plain")
    }
    shot = browser.screenshot(str(artifacts / "plot_demo.png"))
    errors = [m for m in browser.console_messages() if m.startswith(("exception", "console.error"))]
    assert not errors, errors

    for name, s in stats.items():
        assert s and s["width"] >= 480 and s["height"] >= 260, (name, s)
    # The empty plot still has frames and legend keys, but no trajectory lines:
    # every canvas with data must have far more coloured pixels than it.
    base = stats["empty"]["colored"]
    assert stats["final"]["colored"] > base + 2000, stats
    assert stats["plain"]["colored"] > base + 1000, stats
    assert stats["live"]["colored"] > base + 500, stats
    # Live is half a run: fewer line pixels than the finished plot.
    assert stats["live"]["colored"] < stats["final"]["colored"], stats
    # θ dashes, the selection halo and labels are near-white.
    assert stats["final"]["bright"] > stats["empty"]["bright"] + 200, stats
    print(shot, stats)
