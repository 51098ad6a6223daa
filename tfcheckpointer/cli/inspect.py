"""`tfcheckpointer inspect PATH`: a checkpoint or graph file described as aligned text or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Container, Mapping
from typing import Any

from tfcheckpointer.cli.startup import import_tensorflow


def add_parser(commands: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    text = "describe a checkpoint or graph file without running it"
    inspect = commands.add_parser("inspect", help=text, description=text, parents=[parent])
    inspect.add_argument(
        "path",
        help="a checkpoint directory or prefix (or its .index file), a .pb / .pbtxt GraphDef "
        "or a .meta MetaGraphDef",
    )
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import_tensorflow(verbose=args.verbose, keras=False)
    from tfcheckpointer.graph.inspection import inspect_path

    report = inspect_path(args.path)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def format_report(report: Mapping[str, Any]) -> str:
    """`report` as aligned, human-readable text."""
    if report["kind"] == "checkpoint":
        return _format_checkpoint(report)
    return _format_graph(report)


def _format_checkpoint(report: Mapping[str, Any]) -> str:
    step = "unknown"
    if report["step"] is not None:
        step = f"{report['step']} (from {report['step_source'].replace('_', ' ')})"
    lines = _fields([("checkpoint", report["prefix"]), ("step", step)])
    lines += _fields([(
        "variables", f"{report['variable_count']}, {report['total_bytes']:,} bytes"
    )])
    rows = [
        [v["key"], _shape(v["shape"]), v["dtype"], "?" if v["bytes"] is None else f"{v['bytes']:,}"]
        for v in report["variables"]
    ]
    lines += _table(["key", "shape", "dtype", "bytes"], rows, right=(3,))
    total = sum(f["bytes"] for f in report["files"])
    lines += _fields([("files", f"{len(report['files'])}, {total:,} bytes")])
    lines += _table(None, [[f["path"], f"{f['bytes']:,}"] for f in report["files"]], right=(1,))
    if report["checkpoints"] is not None:
        lines += _fields([("checkpoints", f"{len(report['checkpoints'])} in {report['path']}")])
        lines += _table(
            None,
            [
                [
                    c["prefix"],
                    "step ?" if c["step"] is None else f"step {c['step']}",
                    "(inspected)" if c["prefix"] == report["prefix"] else "",
                ]
                for c in report["checkpoints"]
            ],
        )
    return "\n".join(lines)


def _format_graph(report: Mapping[str, Any]) -> str:
    kind = "MetaGraphDef" if report["kind"] == "meta_graph" else "GraphDef"
    functions = ", ".join(f"{f['name']} ({f['node_count']} nodes)" for f in report["functions"])
    frozen = "yes" if report["frozen"] else f"no, {len(report['variable_ops'])} variable op(s)"
    lines = _fields([
        ("file", f"{report['path']} ({report['format']} {kind}, {report['bytes']:,} bytes)"),
        ("nodes", str(report["node_count"])),
        ("frozen", frozen),
        ("functions", functions or "none"),
    ])
    for side in ("inputs", "outputs"):
        entries = report[side]
        lines += _fields([(side, f"{len(entries)} (from {report[side + '_source']})")])
        lines += _table(
            None, [[e["tensor"], e["dtype"] or "?", _shape(e["shape"])] for e in entries]
        )
    if report["variable_ops"]:
        lines += _fields([("variable ops", "")])
        lines += _table(
            None,
            [
                [v["name"], v["op"], f"in function {v['function']}" if v["function"] else ""]
                for v in report["variable_ops"]
            ],
        )
    lines += _fields([("ops", f"{len(report['ops'])} kinds")])
    lines += _table(None, [[op, str(count)] for op, count in report["ops"].items()], right=(1,))
    meta = report["meta_graph"]
    if meta is not None:
        saver = meta["saver_def"]
        lines += _fields([
            ("tags", ", ".join(meta["tags"]) or "none"),
            ("tensorflow", meta["tensorflow_version"] or "unknown"),
            ("collections", ", ".join(meta["collections"]) or "none"),
            ("saver", "none" if saver is None else f"{saver['version']}"),
        ])
        if saver is not None:
            lines += _table(None, [[k, saver[k]] for k in saver if k != "version"])
        lines += _fields([("signatures", str(len(meta["signatures"])))])
        for key, sig in meta["signatures"].items():
            lines.append(f"  {key} ({sig['method_name']})")
            rows = [
                [side, name, tensor]
                for side in ("inputs", "outputs")
                for name, tensor in sig[side].items()
            ]
            lines += _table(None, rows, indent=4)
    return "\n".join(lines)


def _fields(pairs: list[tuple[str, str]]) -> list[str]:
    return [f"{label + ':':<14}{value}".rstrip() for label, value in pairs]


def _table(
    header: list[str] | None,
    rows: list[list[str]],
    *,
    right: Container[int] = (),
    indent: int = 2,
) -> list[str]:
    """Rows of cells, columns padded to a common width; `right` columns right-aligned."""
    if not rows:
        return []
    rows = ([[h.upper() for h in header]] if header else []) + rows
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append((" " * indent + "  ".join(cells)).rstrip())
    return lines


def _shape(shape: list[int | None] | None) -> str:
    if shape is None:
        return "<unknown rank>"
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
