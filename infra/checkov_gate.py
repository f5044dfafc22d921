"""Fail `make infra-check` on what checkov's exit code misses: files it could not parse.

checkov exits 1 on a failed check but 0 when a Bicep file does not parse (it only counts it),
so a syntax its parser does not know would silently drop a whole file from the scan.
Usage: python infra/checkov_gate.py .run/checkov.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(report: str) -> int:
    """Print the summary; return 1 on parsing errors, failed checks or an empty scan."""
    data = json.loads(Path(report).read_text())
    reports = data if isinstance(data, list) else [data]
    bicep = [r for r in reports if r.get("check_type") == "bicep"]
    if not bicep:
        print(f"checkov gate: no bicep report in {report}", file=sys.stderr)
        return 1
    summary = bicep[0]["summary"]
    print(
        "checkov gate: passed={passed} failed={failed} skipped={skipped} "
        "parsing_errors={parsing_errors} resources={resource_count}".format(**summary)
    )
    if summary["parsing_errors"]:
        print(
            "checkov gate: some Bicep files were not parsed, so not checked; list them with\n"
            "  .venv-checkov/bin/checkov -d infra --framework bicep --skip-download -o json"
            " | grep -A3 parsing_errors",
            file=sys.stderr,
        )
    return 1 if summary["parsing_errors"] or summary["failed"] or not summary["passed"] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
