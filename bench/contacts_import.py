"""Importing a contact file: rows per second against a floor, and peak memory against the rows.

The file: ROWS rows of Name, Phone, Email, Store, half US numbers written as 1 (202) XXX-XXXX,
half UK numbers as 447XXXXXXXXX, every number valid and distinct, half the emails empty.

- floor: the same file read with the csv module and each number parsed, checked and
  formatted with phonenumbers (parse, is_valid_number, format_number E.164) and nothing
  else: what any importer must do, in this process.
- canvass: `canvass contacts import FILE --list bench` into a fresh SQLite records database,
  a process of its own: its wall time less that of importing a header-only file (starting
  Python, imports, the schema check), its CPU time likewise (steadier on a busy machine),
  and its peak RSS (getrusage of that child alone, by wait4).
The import runs twice more on a tenth of the file: memory that does not grow with the rows
has the same peak at a tenth and at the whole (`rss_growth` = whole / tenth).

This part alone (bench/run runs it with the others), its figures as JSON on stdout:

    python -m bench.contacts_import [--rows N]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import phonenumbers

from bench.procs import BenchError, run_alone
from engine.records.commands import upgrade

REPO = Path(__file__).resolve().parents[1]
FULL_ROWS, QUICK_ROWS = 1_000_000, 10_000
RATIO_TARGET = 0.5
GROWTH_TARGET = 1.25
NOT_DIGITS = re.compile(r"[^0-9]")


def write_file(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["Name", "Phone", "Email", "Store"])
        for i in range(rows):
            half = i // 2
            if i % 2 == 0:
                local = 2_000_000 + half
                phone = f"1 (202) {local // 10_000:03d}-{local % 10_000:04d}"
            else:
                phone = f"447{half:09d}"
            email = f"person{i}@example.com" if i % 4 < 2 else ""
            writer.writerow([f"Person {i}", phone, email, f"Store {i % 50}"])


def floor(path: Path) -> dict:
    started, cpu, valid = time.perf_counter(), time.process_time(), 0
    with path.open(newline="", encoding="utf-8") as source:
        reader = csv.reader(source)
        next(reader)
        for row in reader:
            number = phonenumbers.parse("+" + NOT_DIGITS.sub("", row[1]), None)
            if phonenumbers.is_valid_number(number):
                phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
                valid += 1
    return {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu,
            "valid": valid}


def canvass_import(path: Path, database: Path) -> dict:
    url = f"sqlite:///{database}"
    for stale in database.parent.glob(database.name + "*"):
        stale.unlink()
    upgrade(url)
    env = {**os.environ, "DATABASE_URL": url}
    command = [sys.executable, "-m", "engine.tools.cli", "contacts", "import", str(path), "--list", "bench"]
    report_path, errors_path = path.with_suffix(".report.json"), path.with_suffix(".stderr")
    with report_path.open("wb") as out, errors_path.open("wb") as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak RSS
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise BenchError(f"canvass contacts import failed: {errors_path.read_text(errors='replace')[-500:]}")
    report = json.loads(report_path.read_text())
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "imported": report["imported"], "rejected": len(report["rejected"]),
            "peak_rss_mb": usage.ru_maxrss / 1024}


def run(workdir: Path, quick: bool, progress, rows: int | None = None) -> dict:
    rows = rows or (QUICK_ROWS if quick else FULL_ROWS)
    whole, tenth = workdir / "contacts.csv", workdir / "contacts-tenth.csv"
    header_only = workdir / "contacts-empty.csv"
    progress(f"contact import: writing {rows} rows")
    write_file(whole, rows)
    write_file(tenth, rows // 10)
    write_file(header_only, 0)
    progress("contact import: the floor (csv + phonenumbers)")
    bare = floor(whole)
    progress("contact import: canvass contacts import, a tenth then the whole")
    start = canvass_import(header_only, workdir / "empty.db")
    small = canvass_import(tenth, workdir / "tenth.db")
    full = canvass_import(whole, workdir / "whole.db")
    if full["imported"] != rows or bare["valid"] != rows:
        raise BenchError(f"contact import: {full['imported']} imported and {bare['valid']} valid "
                         f"of {rows} rows")
    floor_rate = rows / bare["seconds"]
    canvass_rate = rows / max(full["seconds"] - start["seconds"], 1e-3)
    return {"rows": rows, "floor_rows_per_s": floor_rate, "canvass_rows_per_s": canvass_rate,
            "startup_s": start["seconds"],
            "floor_cpu_us_per_row": bare["cpu_seconds"] / rows * 1e6,
            "canvass_cpu_us_per_row": (full["cpu_seconds"] - start["cpu_seconds"]) / rows * 1e6,
            "ratio": canvass_rate / floor_rate, "ratio_target": RATIO_TARGET,
            "peak_rss_mb": full["peak_rss_mb"], "peak_rss_mb_tenth": small["peak_rss_mb"],
            "rss_growth": full["peak_rss_mb"] / small["peak_rss_mb"], "growth_target": GROWTH_TARGET,
            "file_mb": whole.stat().st_size / 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.contacts_import",
                                     description="the contact import benchmark alone")
    parser.add_argument("--rows", type=int, default=FULL_ROWS, metavar="N",
                        help=f"rows in the file (default {FULL_ROWS:,}; at least 10)")
    args = parser.parse_args(argv)
    if not 10 <= args.rows <= 100_000_000:
        parser.error("--rows must be between 10 and 100000000")
    return run_alone("contacts_import", lambda workdir, progress: run(workdir, False, progress, args.rows))


if __name__ == "__main__":
    sys.exit(main())
