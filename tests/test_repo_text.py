"""The repository stands on its own and reads as a product, not a change log: no file points outside it
(a sibling folder of specs, or one of its ``*.md`` files), and none speaks of "issue N" or "this change"."""
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "a path outside the repository": re.compile(r"\.\./shared|\bshared/(method|llamagen)\.md"),
    "an issue number": re.compile(r"\bissues? #?\d+", re.IGNORECASE),
    "a change-log phrase": re.compile(r"\bthis change\b|\bthe issue's\b", re.IGNORECASE),
}
THIS_FILE = Path(__file__).resolve()


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    paths = [ROOT / n for n in names.decode().split("\0") if n]
    out = []
    for p in paths:
        if not p.is_file() or p.resolve() == THIS_FILE:
            continue
        data = p.read_bytes()
        if b"\0" in data[:8192]:  # weights, images
            continue
        out.append(p)
    return out


def test_no_file_points_outside_the_repo_or_reads_as_a_change_log():
    files = tracked_text_files()
    assert any(p.name == "README.md" for p in files) and len(files) > 50
    found = []
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        for what, pattern in FORBIDDEN.items():
            for m in pattern.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                found.append(f"{p.relative_to(ROOT)}:{line}: {what}: {m.group(0)!r}")
    assert not found, "\n".join(found)


def test_the_patterns_catch_what_they_should():
    up, spec = "..", "shared"  # spelled in parts so this file holds no such reference itself
    hits = [f"see {up}/{spec}/method.md", f"(``{spec}/llamagen" + ".md`` §5)", "the targets of issue 10", "issue #3",
            "main before this change", "Against the issue's targets"]
    misses = ["docs/method.md", "issues a warning", "shared memory", "a change of scale"]
    assert all(any(p.search(h) for p in FORBIDDEN.values()) for h in hits)
    assert not any(p.search(m) for p in FORBIDDEN.values() for m in misses)
