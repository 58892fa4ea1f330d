"""Read pytest's JUnit XML report and say what ran: scripts/test's verdict does not rest on the terminal output alone.

  python scripts/junit_summary.py REPORT.xml PYTEST_EXIT_STATUS [COLLECTED_FILE]

Prints one line (tests, passed, failed, errors, skipped, seconds) and the failed tests' ids, and exits non-zero when
anything failed, when pytest's exit status was not 0, when the report is missing (pytest ended before writing it), or
when fewer tests ran than were collected (COLLECTED_FILE: the count tests/conftest.py writes after collection).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def main(report: Path, status: int, collected: Path | None = None) -> int:
    if not report.is_file() or report.stat().st_size == 0:
        print(f"tests: pytest ended (exit status {status}) without writing its report {report}", file=sys.stderr)
        return status or 1
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) for s in suites)
    errors = sum(int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    seconds = sum(float(s.get("time", 0)) for s in suites)
    print(f"tests: {total} run, {total - failed - errors - skipped} passed, {failed} failed, {errors} errors, {skipped} skipped in {seconds:.0f} s")
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            print(f"  FAILED {case.get('classname')}::{case.get('name')}")
    if failed or errors:
        return status or 1
    expected = int(collected.read_text()) if collected is not None and collected.is_file() and collected.read_text().strip() else None
    if expected is not None and total < expected:
        print(f"tests: only {total} of the {expected} collected tests ran: the run ended early", file=sys.stderr)
        return status or 1
    return status


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None))
