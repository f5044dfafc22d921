"""Cold start: what importing the function app costs beyond the Functions library it cannot avoid.
The host imports function_app on every cold start, so anything it pulls in at module level (SDKs,
YAML, the pipeline) is paid before the first event; the ratio to `import azure.functions` shows it.

Each command runs in a fresh interpreter from the repo root, interleaved so that drift in machine
load hits both alike; the median of each is compared. When the ratio fails, the modules that
function_app adds are listed with their own import time (python -X importtime).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import ROOT, result, say

TARGET = 1.5
APP = "import function_app"
BASE = "import azure.functions"


def _seconds(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - start


def extra_modules() -> list[dict[str, Any]]:
    """Top-level packages function_app imports beyond azure.functions, by cumulative import time."""
    code = (
        "import sys, azure.functions\n"
        "before = set(sys.modules)\n"
        "import function_app\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    added = set(out.split())
    timing = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"{BASE}; {APP}"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stderr
    cumulative: dict[str, int] = {}
    for line in timing.splitlines():  # "import time: self [us] | cumulative | imported package"
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[1].isdigit() and parts[2].strip() in added:
            cumulative[parts[2].strip()] = int(parts[1])
    tops = sorted({m.split(".")[0] for m in added})
    rows = [{"module": m, "cumulative_us": cumulative.get(m, 0)} for m in tops]
    return sorted(rows, key=lambda r: -r["cumulative_us"])


def run(runs: int = 12) -> dict[str, Any]:
    say(f"[coldstart] {runs} interleaved runs of each import, fresh interpreters")
    _seconds(APP), _seconds(BASE)  # warm the OS file cache and __pycache__
    app, base = [], []
    for _ in range(runs):
        app.append(_seconds(APP))
        base.append(_seconds(BASE))
    ratio = statistics.median(app) / statistics.median(base)
    return result(
        "cold start (import function_app ÷ import azure.functions)",
        ratio,
        TARGET,
        "<=",
        runs=runs,
        function_app_ms=round(statistics.median(app) * 1000, 1),
        azure_functions_ms=round(statistics.median(base) * 1000, 1),
        extra_modules=extra_modules(),
    )
