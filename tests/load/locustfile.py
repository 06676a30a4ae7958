"""Load test of Vigil's ingest Function URL: Prometheus remote-write and JSON pushes at rising
rates.

Locally, `scripts/load-test` starts the real ingest binary behind a local Function URL front
(one execution environment, as one Lambda instance) against LocalStack and runs this file
headless. Against a deployed stack, see README ("Load test"): the URL takes SigV4-signed
requests only, which `VIGIL_LOAD_SIGV4=1` adds (credentials and region from the usual AWS
environment).

The offered load rises in steps (VIGIL_LOAD_STEPS, requests per second per step, default
"2 4 6 8 10 12 16 20"; VIGIL_LOAD_STEP_SECONDS each, default 15), after a warm-up at the first
step's rate that is not recorded (VIGIL_LOAD_WARMUP_SECONDS, default 5). Every request's outcome and
latency is recorded in its step; at the end a JSON summary per step goes to VIGIL_LOAD_RESULT
(default load-result.json): offered and achieved requests per second, failures, p50 and p99
latency, and the samples per second ingest reports stored in CloudWatch. The run is then held
to the gate (gate.py, thresholds in gate.json): a step that breaks it is printed and makes
Locust exit with status 1.
"""

import json
import math
import os
import random
import time

from locust import HttpUser, LoadTestShape, constant_throughput, events, task

import gate
import wire

STEPS = [float(s) for s in os.environ.get("VIGIL_LOAD_STEPS", "2 4 6 8 10 12 16 20").split()]
STEP_SECONDS = float(os.environ.get("VIGIL_LOAD_STEP_SECONDS", "15"))
WARMUP_SECONDS = float(os.environ.get("VIGIL_LOAD_WARMUP_SECONDS", "5"))
# Each user sends one request per second; a step's users are its offered rate.
USER_RATE = 1.0
SERIES_PER_WRITE = int(os.environ.get("VIGIL_LOAD_SERIES", "500"))
RESULT = os.environ.get("VIGIL_LOAD_RESULT", "load-result.json")
SIGV4 = os.environ.get("VIGIL_LOAD_SIGV4") == "1"
# Distinct senders (the `instance` and `pod` labels): each sender's series are distinct
# CloudWatch metrics, billed as custom metrics on AWS, so their number is bounded.
WORKERS = int(os.environ.get("VIGIL_LOAD_WORKERS", "10"))


def remote_write_body(worker):
    at_ms = int(time.time() * 1000)
    series = []
    for i in range(SERIES_PER_WRITE):
        labels = {
            "__name__": "http_requests_total",
            "job": "load",
            "instance": f"worker-{worker}",
            "route": f"/r{i % 50}",
            "code": ("200", "404", "500")[i % 3],
            "method": ("GET", "POST")[i % 2],
            # A per-pod label; ingest's default mapping drops it.
            "pod": f"load-{worker}-{i % 7}",
        }
        series.append((labels, float(random.randint(0, 10_000))))
    return wire.remote_write_body(series, at_ms)


def json_push_body(worker):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps({
        "namespace": "Load/Vigil",
        "metrics": [
            {"name": "latency", "value": random.uniform(50, 400), "unit": "Milliseconds",
             "dimensions": {"service": f"svc{j}", "worker": str(worker)}, "timestamp": now}
            for j in range(20)
        ],
    })


# --- per-step bookkeeping -------------------------------------------------------------------

class Steps:
    def __init__(self):
        self.started = None
        self.records = {}  # step index -> list of (latency_ms, ok, stored)

    def step(self, at=None):
        """The measured step at `at` (default now); None in the warm-up and after the end."""
        if self.started is None:
            return None
        elapsed = (at or time.monotonic()) - self.started
        if elapsed < 0:
            return None
        index = int(elapsed // STEP_SECONDS)
        return index if index < len(STEPS) else None

    def finished(self):
        return self.started is not None and time.monotonic() >= self.started + len(STEPS) * STEP_SECONDS

    def record(self, sent, latency_ms, ok, stored):
        """One request, in the step it was sent in (so a step's achieved rate is what it sent
        and got answered, whatever the latency)."""
        index = self.step(sent)
        if index is not None:
            self.records.setdefault(index, []).append((latency_ms, ok, stored))

    def summary(self):
        out = []
        for index, offered in enumerate(STEPS):
            rows = self.records.get(index, [])
            latencies = sorted(r[0] for r in rows)

            def pct(p):
                if not latencies:
                    return None
                return round(latencies[min(len(latencies) - 1, math.ceil(p * len(latencies)) - 1)], 1)

            out.append({
                "offered_rps": offered,
                "requests": len(rows),
                "achieved_rps": round(len(rows) / STEP_SECONDS, 2),
                "failures": sum(1 for r in rows if not r[1]),
                "p50_ms": pct(0.50),
                "p99_ms": pct(0.99),
                "samples_stored_per_s": round(sum(r[2] for r in rows) / STEP_SECONDS, 1),
            })
        return out


STEPS_STATE = Steps()


@events.test_start.add_listener
def _start(environment, **_):
    # The warm-up (the first step's rate, not recorded) opens connections and starts instances.
    STEPS_STATE.started = time.monotonic() + WARMUP_SECONDS


GATE = gate.thresholds()
GATE_VIOLATIONS = []


@events.test_stop.add_listener
def _stop(environment, **_):
    steps = STEPS_STATE.summary()
    GATE_VIOLATIONS[:] = gate.violations(steps, GATE)
    with open(RESULT, "w") as f:
        json.dump({"step_seconds": STEP_SECONDS, "series_per_write": SERIES_PER_WRITE,
                   "steps": steps, "gate": GATE, "gate_file": gate.path(),
                   "gate_violations": GATE_VIOLATIONS}, f, indent=2)


@events.quitting.add_listener
def _quitting(environment, **_):
    for v in GATE_VIOLATIONS:
        print(f"load gate: {v}")
    if GATE_VIOLATIONS:
        environment.process_exit_code = 1


class IngestUser(HttpUser):
    """Alternates remote-write batches (9 in 10) and JSON pushes, one request per second."""

    wait_time = constant_throughput(USER_RATE)

    def on_start(self):
        self.worker = random.randrange(WORKERS)

    def _post(self, path, body, headers, name):
        if SIGV4:
            headers = wire.signed("POST", self.host.rstrip("/") + path, body, headers)
        sent = time.monotonic()
        started = time.perf_counter()
        with self.client.post(path, data=body, headers=headers, name=name, catch_response=True) as r:
            latency = (time.perf_counter() - started) * 1000
            stored = 0
            ok = r.status_code == 200
            try:
                stored = int(r.json().get("stored", 0))
            except Exception:  # a non-JSON answer (a proxy's error page): counted as failed
                ok = False
            if ok:
                r.success()
            else:
                r.failure(f"status {r.status_code}: {r.text[:200]}")
            STEPS_STATE.record(sent, latency, ok, stored)

    @task(9)
    def remote_write(self):
        self._post("/api/v1/write", remote_write_body(self.worker), dict(wire.REMOTE_WRITE_HEADERS),
                   "remote-write")

    @task(1)
    def json_push(self):
        self._post("/", json_push_body(self.worker).encode(), {"Content-Type": "application/json"}, "json-push")


class RisingSteps(LoadTestShape):
    """One user per request per second of the step's offered rate; stops after the last step."""

    def tick(self):
        if STEPS_STATE.finished():
            return None
        index = STEPS_STATE.step() or 0
        users = max(1, int(round(STEPS[index] / USER_RATE)))
        return users, users
