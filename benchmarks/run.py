"""The benchmark suite: what a save, a resume, a freeze and inference cost, against the alternatives.

    TF_CPP_MIN_LOG_LEVEL=3 python benchmarks/run.py [--quick] [--repeats N] [--only save,resume]
                                                    [--json out.json]

Each section is a module beside this one with `run(quick, repeats) -> rows`
(one flat dict per table row); its competitors run interleaved (A B A B) over
the repeats, each measured fit in a fresh process, and figures are medians.
Prints a Markdown table per section; `--json` also writes the rows with the
machine (cores, memory, versions). `--quick` runs tiny models, in well under
a minute, only to show the code still runs: its figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import sys
import time

import common

SECTIONS = {
    "save": "Fit overhead per save and hook stall",
    "throughput": "Write throughput of one full-state save",
    "resume": "Resume time",
    "freeze": "Freeze time and peak memory against the stock converter",
    "inference": "Frozen-graph inference against the Keras model",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny models and few steps (CI)")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions (default: 3, quick: 1)")
    parser.add_argument("--only", default=None, help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    names = list(SECTIONS) if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}")
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if repeats < 1:
        parser.error(f"--repeats must be at least 1, got {repeats}")

    report = {
        "command": " ".join(["python", "benchmarks/run.py", *sys.argv[1:]] if argv is None else argv),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "repeats": repeats,
        "machine": common.machine(),
        "sections": {},
    }
    for name in names:
        start = time.perf_counter()
        rows = importlib.import_module(name).run(args.quick, repeats)
        seconds = time.perf_counter() - start
        report["sections"][name] = {"title": SECTIONS[name], "seconds": round(seconds, 1), "rows": rows}
        print(f"\n## {SECTIONS[name]} ({seconds:.0f} s)\n\n{common.markdown_table(rows)}", flush=True)
    machine = report["machine"]
    print(
        f"\n{machine['cores']} cores, {machine['memory_gib']} GiB, {machine['cpu']}; "
        f"TensorFlow {machine.get('tensorflow') or machine.get('tensorflow-cpu')}, "
        f"Keras {machine.get('keras')}; load average at start {machine['load_average']}"
    )
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
