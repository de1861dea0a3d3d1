"""Write ``docs/benchmarks.md`` from the benchmarks' JSON records (``benchmarks/results/*.json``).

    python benchmarks/report.py            # (re)write docs/benchmarks.md
    python benchmarks/report.py --check    # exit 1 if docs/benchmarks.md is not up to date

The page is the hand-written introduction ``benchmarks/benchmarks_intro.md``
followed by one section per benchmark and, in it, one table per record: every
figure with its value, unit, the figure a ratio is against and a note, then
the command, the date, the machine and the library versions of the run.
Records are written by the benchmarks themselves (``benchmarks/_record.py``)
or transcribed from older documentation (their ``source`` says so). The
output depends only on the records and the introduction (sorted, no time
stamps), so re-running this command without new records changes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
INTRO = ROOT / "benchmarks" / "benchmarks_intro.md"
OUTPUT = ROOT / "docs" / "benchmarks.md"
COMMAND = "python benchmarks/report.py"
REQUIRED = ("benchmark", "command", "date", "machine", "versions", "figures")


class RecordError(ValueError):
    """A record that cannot be reported (not JSON, or a field missing or malformed)."""


def load_records(folder: Path) -> list[tuple[Path, dict]]:
    """Every ``*.json`` record in ``folder``, checked, sorted by benchmark then file (the default file first)."""
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise RecordError(f"{path}: not a readable JSON record ({error})") from None
        if not isinstance(record, dict):
            raise RecordError(f"{path}: a record is a JSON object")
        missing = [key for key in REQUIRED if key not in record]
        if missing:
            raise RecordError(f"{path}: missing {', '.join(missing)}")
        if not isinstance(record["figures"], list) or not all(
            isinstance(f, dict) and "name" in f and "value" in f for f in record["figures"]
        ):
            raise RecordError(f"{path}: 'figures' must be a list of objects with 'name' and 'value'")
        records.append((path, record))

    def order(item: tuple[Path, dict]) -> tuple:
        path, record = item
        name = str(record["benchmark"])
        return (not name.startswith("bench_"), name, path.stem != name, path.name)

    return sorted(records, key=order)


def cell(text: object) -> str:
    """Text safe inside a Markdown table cell."""
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def format_value(value: object) -> str:
    """A figure's value: integers with thousands separators, floats to 4 significant digits."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        size = abs(value)
        if size == 0:
            return "0"
        if size >= 1000:
            return f"{value:,.0f}"
        if size >= 1e-3:
            return f"{value:.4g}"
        return f"{value:.2g}"
    return str(value)


def describe_machine(machine: object) -> str:
    """One line: description or CPU, cores, RAM, platform, JAX backend and devices, conditions."""
    if not isinstance(machine, dict):
        return str(machine)
    parts = []
    if machine.get("description"):
        parts.append(str(machine["description"]))
    if machine.get("cpu"):
        parts.append(str(machine["cpu"]))
    if machine.get("cores"):
        parts.append(f"{machine['cores']} cores")
    if machine.get("ram_gb"):
        parts.append(f"{machine['ram_gb']} GB RAM")
    if machine.get("platform"):
        parts.append(str(machine["platform"]))
    if machine.get("python"):
        parts.append(f"Python {machine['python']}")
    backend = machine.get("jax_backend")
    if backend:
        devices = machine.get("jax_devices") or []
        parts.append(f"JAX backend {backend}" + (f" ({', '.join(map(str, devices))})" if devices else ""))
    if machine.get("load_average_at_end"):
        parts.append("load average at the end " + " / ".join(str(x) for x in machine["load_average_at_end"]))
    if machine.get("conditions"):
        parts.append(str(machine["conditions"]))
    return "; ".join(parts) if parts else "not recorded"


def describe_versions(versions: object) -> str:
    if not isinstance(versions, dict) or not versions:
        return "not recorded"
    known = [f"{name} {version}" for name, version in sorted(versions.items()) if version]
    return ", ".join(known) if known else "not recorded"


def record_section(path: Path, record: dict) -> list[str]:
    """The Markdown of one record: heading, provenance, the table of figures, notes."""
    relative = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    title = cell(record.get("title") or path.stem)
    title = title[:1].upper() + title[1:]
    lines = [f"### {cell(path.stem)}", "", title.rstrip(".") + ".", ""]
    source = str(record.get("source") or "run")
    if source != "run":
        lines += [f"**Not a fresh run:** {cell(source)}.", ""]
    command = str(record.get("command") or "").strip()
    lines += [
        f"- Record: `{relative}`",
        f"- Command: `{command}`" if command else "- Command: none recorded",
        f"- Date: {cell(record.get('date') or 'not recorded')}",
        f"- Machine: {cell(describe_machine(record.get('machine')))}",
        f"- Versions: {cell(describe_versions(record.get('versions')))}",
        "",
    ]
    figures = record["figures"]
    if figures:
        lines += ["| figure | value | unit | against (same run) | note |", "|---|---|---|---|---|"]
        for f in figures:
            lines.append(
                f"| {cell(f['name'])} | {cell(format_value(f['value']))} | {cell(f.get('unit') or '')} "
                f"| {cell(f.get('baseline') or '')} | {cell(f.get('note') or '')} |"
            )
        lines.append("")
    else:
        lines += ["No figures.", ""]
    notes = record.get("notes") or []
    if notes:
        lines += ["Notes:", ""] + [f"- {cell(note)}" for note in notes] + [""]
    return lines


def render(records: list[tuple[Path, dict]], intro: str) -> str:
    """The whole page."""
    lines = [
        "# Benchmarks",
        "",
        f"*This page is generated by `{COMMAND}` from the records in `benchmarks/results/*.json`, "
        "with the introduction from `benchmarks/benchmarks_intro.md`. Do not edit it by hand: "
        "re-run a benchmark (it writes its record) or edit the introduction, then re-run "
        f"`{COMMAND}`.*",
        "",
        intro.strip(),
        "",
        "## Records",
        "",
        "| record | benchmark | date | source | figures |",
        "|---|---|---|---|---|",
    ]
    for path, record in records:
        source = str(record.get("source") or "run")
        lines.append(f"| `{cell(path.name)}` | {cell(record['benchmark'])} | {cell(record.get('date') or '')} "
                     f"| {cell(source)} | {len(record['figures'])} |")
    lines.append("")
    current = None
    for path, record in records:
        if record["benchmark"] != current:
            current = record["benchmark"]
            lines += [f"## {cell(current)}", ""]
        lines += record_section(path, record)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of JSON records (%(default)s)")
    parser.add_argument("--intro", type=Path, default=INTRO, help="hand-written introduction (%(default)s)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="page to write (%(default)s)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the page is out of date")
    args = parser.parse_args(argv)
    try:
        records = load_records(args.results)
    except RecordError as error:
        print(f"report: {error}", file=sys.stderr)
        return 2
    page = render(records, args.intro.read_text())
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != page:
            print(f"report: {args.output} is out of date; run {COMMAND}", file=sys.stderr)
            return 1
        print(f"report: {args.output} is up to date ({len(records)} records)")
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(page)
    print(f"report: wrote {args.output} from {len(records)} records")
    return 0


if __name__ == "__main__":
    sys.exit(main())
