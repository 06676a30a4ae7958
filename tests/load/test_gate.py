"""Unit tests of the load-test gate (run by scripts/test: python -m unittest)."""

import json
import os
import tempfile
import unittest

import gate


def step(offered, requests, failures=0, p99=100.0, achieved=None):
    return {
        "offered_rps": offered,
        "requests": requests,
        "failures": failures,
        "p99_ms": p99,
        "achieved_rps": offered if achieved is None else achieved,
    }


class GateTest(unittest.TestCase):
    def setUp(self):
        self.gate = gate.thresholds()

    def test_the_shipped_thresholds_load(self):
        self.assertEqual(set(self.gate), set(gate.KEYS))

    def test_a_healthy_run_passes(self):
        self.assertEqual(gate.violations([step(2, 20), step(4, 40, p99=900.0)], self.gate), [])

    def test_each_threshold_fails_the_step_that_breaks_it(self):
        found = gate.violations(
            [
                step(2, 100, failures=2),
                step(4, 40, p99=1500.0),
                step(8, 40, achieved=4.0),
                step(16, 0, p99=None, achieved=0.0),
            ],
            self.gate,
        )
        self.assertEqual(len(found), 4, found)
        self.assertIn("step 2 req/s: error ratio 0.020", found[0])
        self.assertIn("step 4 req/s: p99 1500.0 ms", found[1])
        self.assertIn("step 8 req/s: achieved 4.0 req/s", found[2])
        self.assertIn("step 16 req/s: no request completed", found[3])

    def test_an_incomplete_gate_file_is_refused(self):
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"max_error_ratio": 0.01, "max_p99": 5}, f)
        try:
            with self.assertRaises(ValueError) as e:
                gate.thresholds(f.name)
            self.assertIn("max_p99", str(e.exception))
        finally:
            os.unlink(f.name)


if __name__ == "__main__":
    unittest.main()
