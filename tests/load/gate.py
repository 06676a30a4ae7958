"""The load-test gate: what every step of a Locust run must meet before a change reaches
production. The thresholds are in gate.json beside this file (VIGIL_LOAD_GATE names another):

    max_error_ratio     failed requests / requests, at most
    max_p99_ms          the step's 99th percentile latency, at most
    min_achieved_ratio  achieved requests/s / offered requests/s, at least

The same file gates the run against the dev stack in the workflow and the short run against
the local front in scripts/test.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = ("max_error_ratio", "max_p99_ms", "min_achieved_ratio")


def path():
    """The gate file: VIGIL_LOAD_GATE, else gate.json beside this file."""
    return os.environ.get("VIGIL_LOAD_GATE") or os.path.join(HERE, "gate.json")


def thresholds(path_=None):
    """The gate's thresholds, every key required and numeric."""
    path_ = path_ or path()
    with open(path_) as f:
        gate = json.load(f)
    missing = [k for k in KEYS if not isinstance(gate.get(k), (int, float))]
    unknown = sorted(set(gate) - set(KEYS))
    if missing or unknown:
        raise ValueError(f"{path_}: missing or non-numeric {missing}, unknown {unknown}")
    return gate


def violations(steps, gate):
    """What each step of a run's summary (locustfile's per-step rows) breaks, as sentences. A
    step without requests breaks the gate: nothing was measured."""
    out = []
    for s in steps:
        name = f"step {s['offered_rps']:g} req/s"
        if not s["requests"]:
            out.append(f"{name}: no request completed")
            continue
        errors = s["failures"] / s["requests"]
        if errors > gate["max_error_ratio"]:
            out.append(f"{name}: error ratio {errors:.3f} > {gate['max_error_ratio']}")
        if s["p99_ms"] is not None and s["p99_ms"] > gate["max_p99_ms"]:
            out.append(f"{name}: p99 {s['p99_ms']} ms > {gate['max_p99_ms']} ms")
        achieved = s["achieved_rps"] / s["offered_rps"]
        if achieved < gate["min_achieved_ratio"]:
            out.append(
                f"{name}: achieved {s['achieved_rps']} req/s, {achieved:.2f} of the offered "
                f"< {gate['min_achieved_ratio']}"
            )
    return out
