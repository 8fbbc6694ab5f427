"""What the toy world's exact checker says about each candidate of one generation.

Only prompts the checker can read get a verdict (a toy model's condition carries the parsed prompt as
``spec``); for every other model or prompt there is nothing to say. A removed candidate is not checked:
its image is partial.
"""
from __future__ import annotations


def check_candidates(condition, result) -> dict | None:
    """``{"spec", "chosen", "chosen_passes", "candidates": [...]}`` for ``result`` (a ``GenerationResult``
    decoded with every candidate), or None when the prompt is not one the checker reads."""
    spec = getattr(condition, "spec", None)
    if spec is None or result.decoded is None:
        return None
    from ..models.toy.checker import check

    candidates = []
    for r in sorted(result.trace.trajectories, key=lambda r: r.index):
        if r.removed_at is not None:
            candidates.append({"index": r.index, "checked": False, "removed_at": r.removed_at,
                               "removed_reason": r.removed_reason})
            continue
        verdict = check(result.decoded[r.index], spec)
        candidates.append({"index": r.index, "checked": True, "passed": verdict.passed,
                           "verdict": verdict.verdict(), "reason": verdict.reason})
    chosen = next(c for c in candidates if c["index"] == result.selected)
    return {"checker": "exact toy-shapes checker", "spec": spec, "chosen": result.selected,
            "chosen_passes": chosen["passed"], "candidates": candidates}


def candidate_note(candidate: dict, steps: int) -> str:
    """'passes', 'wrong object: ...' or 'removed at step s/T (reason), not checked'."""
    if candidate["checked"]:
        return candidate["verdict"]
    reason = (candidate["removed_reason"] or "removed").replace("_", " ")
    return f"removed at step {candidate['removed_at'] + 1}/{steps} ({reason}), not checked"


def verdict_lines(report: dict, steps: int) -> list[str]:
    """The report as printed: the chosen image first, then every other candidate."""
    chosen = next(c for c in report["candidates"] if c["index"] == report["chosen"])
    lines = [f"checker: chosen #{report['chosen']}: {chosen['verdict']}"]
    lines += [f"  #{c['index']}: {candidate_note(c, steps)}" for c in report["candidates"] if c is not chosen]
    return lines
