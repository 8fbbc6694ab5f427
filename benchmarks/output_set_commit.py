"""How long one run's outputs take to move into place (the window in which SIGINT and SIGTERM wait).

``generate`` stages its five files (four PNGs and the trace) and then commits them: run.json marked
incomplete, five renames, run.json marked complete. This times that commit on the local disk, with files of
the sizes a LlamaGen-256 run writes (the trace of N = 8 trajectories is about 1 MB):

    python benchmarks/output_set_commit.py            # median and worst of 50 commits
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image  # noqa: E402

from scalingar_core.app.output_set import OutputSet, folder_lock  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=50)
    p.add_argument("--dir", default=None, help="folder to write in (default: a temporary folder)")
    args = p.parse_args()
    out = Path(args.dir or tempfile.mkdtemp(prefix="output_set_commit-"))
    trace = {"signals": [[0.123456789] * 256 for _ in range(8 * 40)]}  # about 1 MB of JSON
    times = []
    for _ in range(args.runs):
        with folder_lock(out), OutputSet(out, "generate") as outputs:
            for name, size in (("image.png", 256), ("candidates.png", 1024), ("trace_plot.png", 800),
                               ("entropy.png", 1024)):
                outputs.save_image(Image.new("RGB", (size, size), (40, 90, 160)), name)
            outputs.write_json("trace.json", trace)
            start = time.perf_counter()
            outputs.commit()
            times.append(time.perf_counter() - start)
    print(f"commit of 5 files + run.json twice in {out}: median {1000 * statistics.median(times):.2f} ms, "
          f"worst {1000 * max(times):.2f} ms over {args.runs} runs")


if __name__ == "__main__":
    main()
