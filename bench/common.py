"""What every benchmark shares: paths, the sample tenant and policy, how a ratio is judged, RSS."""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
RESULTS = ROOT / "bench" / "results"


@cache
def tenant() -> dict[str, Any]:
    """The snapshot the simulated tenant is seeded from; the offline facts come from the same file."""
    return json.loads((SAMPLES / "tenant.json").read_text(encoding="utf-8"))


def policy() -> Any:
    """The sample policy with the responder's identity, as Settings.from_env builds it for the demo."""
    from responders.settings import load_policy_document

    path = SAMPLES / "policy.yaml"
    loaded = load_policy_document(path.read_text(encoding="utf-8"), str(path))
    return loaded.with_responder(tenant()["responderIdentity"]["principalId"])


def sample(name: str) -> dict[str, Any]:
    """The first item of a captured sample (the files hold Event Grid arrays of one)."""
    loaded = json.loads((SAMPLES / "events" / name).read_text(encoding="utf-8"))
    return loaded[0] if isinstance(loaded, list) else loaded


def verdict(ratio: float, target: float, op: str) -> bool:
    """op is '<=' (lower is better) or '>=' (higher is better)."""
    return ratio <= target if op == "<=" else ratio >= target


def result(
    name: str, ratio: float, target: float, op: str, problems: list[str] | None = None, **details: Any
) -> dict[str, Any]:
    """One benchmark's headline: the ratio, its target and PASS/FAIL, with whatever explains it.
    `problems` are conditions the ratio alone does not show (a wrong status, a lost event): any of
    them fails the benchmark whatever the ratio."""
    return {
        "name": name,
        "ratio": round(ratio, 3),
        "target": target,
        "op": op,
        "pass": verdict(ratio, target, op) and not problems,
        "problems": problems or [],
        **details,
    }


def headline(res: dict[str, Any]) -> str:
    mark = "PASS" if res["pass"] else "FAIL"
    extra = f" ({'; '.join(res['problems'])})" if res.get("problems") else ""
    return f"{res['name']}: {res['ratio']:.3f} (target {res['op']} {res['target']}) {mark}{extra}"


def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident set (or VmHWM, its peak) in KiB, from /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def say(text: str) -> None:
    """Progress notes go to stderr, so stdout holds only results."""
    print(text, file=sys.stderr, flush=True)
