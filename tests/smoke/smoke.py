"""Smoke test of a Vigil stack, after each deploy: each function proves it works through the
AWS APIs a deployed stack answers on, with the stack's own role and configuration.

1. ingest: a SigV4-signed JSON push and a signed remote-write request to the Function URL,
   each read back from CloudWatch (GetMetricData) with the value this run sent.
2. alert: the smoke rules (`smoke/config/rules.yaml`, on the JSON push's metric) are uploaded,
   the alias is invoked with a Scheduler-shaped event (`"vigil": "smoke"`), and the rule's
   notification must arrive on a queue this run subscribes to the stack's smoke topic.
3. backup-verify: a canary backup (a tar.gz with its manifest and SHA-256 checksum) is
   uploaded under `smoke/backups/`, the alias is invoked with a smoke event, and the report it
   writes is read back from S3: the canary set must pass every check it was given, on this
   run's backup.

A smoke run never touches the stack's own rules, backup sets, state or topics: the functions
read `smoke/` and notify only the smoke topic on a smoke event.

    smoke.py --stack vigil-dev            the stack's outputs from CloudFormation
    smoke.py --outputs outputs.json       the outputs as {"Name": "value"} (the local stack's)

Options: --summary FILE appends a Markdown table (the workflow's job summary); --result FILE
writes the figures as JSON; --timeout S bounds each wait (default 180 s: on AWS a metric can
take a minute or two to read back). The AWS environment gives credentials and region;
VIGIL_AWS_ENDPOINT_URL points S3, CloudWatch, SNS, SQS and CloudFormation at an emulator, and
the outputs' LambdaEndpoint (the local stack's) points Lambda at its Invoke API.
Exit status 0 when every step passed, 1 otherwise.
"""

import argparse
import datetime
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
import time
import urllib.error
import urllib.request
import uuid

import boto3
import botocore.config

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "load"))
import wire  # noqa: E402

# Where a JSON push names its metrics, and where ingest stores remote-write series by default.
PUSH_NAMESPACE = "Smoke/Vigil"
REMOTE_WRITE_NAMESPACE = os.environ.get("VIGIL_SMOKE_REMOTE_WRITE_NAMESPACE", "Prometheus")
DIMENSIONS = {"probe": "smoke"}
RULE = "VigilSmoke"
CANARY_SET = "vigil-canary"


class Failed(Exception):
    """A step's check that did not hold."""


def utc(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc)


def iso(t):
    return utc(t).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the stack -------------------------------------------------------------------------------

def stack_outputs(args, cloudformation):
    if args.outputs:
        with open(args.outputs) as f:
            return json.load(f)
    stack = cloudformation.describe_stacks(StackName=args.stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


class Stack:
    def __init__(self, args):
        endpoint = os.environ.get("VIGIL_AWS_ENDPOINT_URL") or None
        session = boto3.session.Session()
        self.region = session.region_name or "us-east-1"

        def client(name, url=endpoint, config=None):
            return session.client(name, endpoint_url=url, region_name=self.region, config=config)

        self.outputs = stack_outputs(args, client("cloudformation"))
        missing = [k for k in ("IngestFunctionUrl", "AlertFunctionArn", "BackupVerifyFunctionArn",
                               "SmokeTopicArn", "VigilBucketName") if k not in self.outputs]
        if missing:
            raise Failed(f"the stack has no output {', '.join(missing)}: deploy the current template")
        self.url = self.outputs["IngestFunctionUrl"].rstrip("/")
        self.bucket = self.outputs["VigilBucketName"]
        self.s3 = client("s3")
        self.cloudwatch = client("cloudwatch")
        self.sns = client("sns")
        self.sqs = client("sqs")
        # A run answers within the function's timeout (backup-verify's is 15 minutes); a
        # throttled invocation (the function did not run) is sent again.
        self.lambda_ = client("lambda", self.outputs.get("LambdaEndpoint") or endpoint,
                              botocore.config.Config(read_timeout=900, retries={"mode": "standard", "max_attempts": 5}))


def wait(what, timeout, probe, every=5.0):
    """`probe()` until it returns something true, or Failed after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise Failed(f"{what}: nothing within {timeout:.0f} s")
        time.sleep(min(every, max(0.5, deadline - time.monotonic())))


def post(stack, path, body, headers):
    url = stack.url + path
    headers = wire.signed("POST", url, body, headers, stack.region)
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:500].decode(errors="replace")


def read_back(stack, namespace, name, at, value, timeout):
    """Waits until CloudWatch returns `value` for the metric's minute at `at`."""
    def probe():
        out = stack.cloudwatch.get_metric_data(
            MetricDataQueries=[{
                "Id": "m",
                "MetricStat": {
                    "Metric": {"Namespace": namespace, "MetricName": name,
                               "Dimensions": [{"Name": k, "Value": v} for k, v in DIMENSIONS.items()]},
                    "Period": 60, "Stat": "Maximum"},
            }],
            StartTime=utc(at - 60), EndTime=utc(at + 120))
        values = out["MetricDataResults"][0]["Values"]
        return any(abs(v - value) < 1e-6 for v in values)
    wait(f"{namespace}/{name} = {value} read back", timeout, probe, every=2.0)


def invoke(stack, arn, event):
    out = stack.lambda_.invoke(FunctionName=arn, InvocationType="RequestResponse",
                               Payload=json.dumps(event).encode())
    payload = json.loads(out["Payload"].read() or b"null")
    if out.get("FunctionError"):
        raise Failed(f"{arn} failed: {json.dumps(payload)[:500]}")
    return payload


def clear_of_the_schedule():
    """Waits, if need be, until 15 s past a minute: the scheduled evaluation starts on the
    minute, and with the stack's reserved concurrency of 1 a smoke run beside it would be
    throttled (and set off the throttle alarm that pages the stack's operators)."""
    second = time.time() % 60
    if second < 15 or second > 45:
        time.sleep((75 - second) % 60)


def smoke_event(run, at):
    """The stack's Scheduler Input, filled as Scheduler fills it, marked as a smoke run."""
    return {"vigil": "smoke", "scheduled_time": iso(at), "attempt": "1",
            "execution_id": run, "schedule_arn": "scripts/smoke"}


# --- the steps -------------------------------------------------------------------------------

def ingest_json(stack, run, ctx, timeout):
    body = json.dumps({"namespace": PUSH_NAMESPACE, "metrics": [{
        "name": "smoke_json", "value": ctx["value"], "unit": "Count",
        "dimensions": DIMENSIONS, "timestamp": iso(ctx["at"])}]}).encode()
    status, answer = post(stack, "/", body, {"Content-Type": "application/json"})
    if status != 200 or not isinstance(answer, dict) or answer.get("stored") != 1:
        raise Failed(f"the JSON push was answered {status}: {answer}")
    read_back(stack, PUSH_NAMESPACE, "smoke_json", ctx["at"], ctx["value"], timeout)
    return f"stored 1, read back {PUSH_NAMESPACE}/smoke_json = {ctx['value']:.0f}"


def ingest_remote_write(stack, run, ctx, timeout):
    labels = {"__name__": "vigil_smoke_remote_write", **DIMENSIONS}
    body = wire.remote_write_body([(labels, ctx["value"] + 1)], int(ctx["at"] * 1000))
    status, answer = post(stack, "/api/v1/write", body, dict(wire.REMOTE_WRITE_HEADERS))
    if status != 200 or not isinstance(answer, dict) or answer.get("stored") != 1:
        raise Failed(f"the remote-write request was answered {status}: {answer}")
    read_back(stack, REMOTE_WRITE_NAMESPACE, "vigil_smoke_remote_write", ctx["at"], ctx["value"] + 1, timeout)
    return f"stored 1, read back {REMOTE_WRITE_NAMESPACE}/vigil_smoke_remote_write = {ctx['value'] + 1:.0f}"


def smoke_rules(value, run):
    return json.dumps({"groups": [{"name": "vigil-smoke", "rules": [{
        "alert": RULE,
        "metric": {"namespace": PUSH_NAMESPACE, "name": "smoke_json", "dimensions": DIMENSIONS,
                   "stat": "Maximum", "period": "1m"},
        # This run's value, larger than any earlier run's: only this run's push fires it.
        "condition": {"operator": ">=", "threshold": value},
        # Ten minutes back: the point is read back first, which on AWS can take minutes.
        "evaluation_periods": 10, "datapoints_to_alarm": 1,
        "labels": {"severity": "info", "smoke_run": run},
        "annotations": {"summary": f"Vigil smoke run {run}"},
    }]}]}, indent=2)


class Subscription:
    """A queue of this run's, subscribed (raw delivery) to the smoke topic while the `with`
    lasts. The queue is created with its policy: a policy set afterwards can take a minute
    to apply, and SNS does not retry a delivery SQS refused meanwhile."""

    def __init__(self, stack, run):
        self.stack, self.name = stack, f"vigil-smoke-{run}"
        self.url = self.subscription = None

    def __enter__(self):
        topic = self.stack.outputs["SmokeTopicArn"]
        partition, region, account = topic.split(":")[1], topic.split(":")[3], topic.split(":")[4]
        arn = f"arn:{partition}:sqs:{region}:{account}:{self.name}"
        policy = {"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
            "Resource": arn, "Condition": {"ArnEquals": {"aws:SourceArn": topic}}}]}
        try:
            self.url = self.stack.sqs.create_queue(
                QueueName=self.name, Attributes={"Policy": json.dumps(policy)})["QueueUrl"]
            self.subscription = self.stack.sns.subscribe(
                TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"},
                ReturnSubscriptionArn=True)["SubscriptionArn"]
        except Exception:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *_):
        if self.subscription:
            self.stack.sns.unsubscribe(SubscriptionArn=self.subscription)
        if self.url:
            self.stack.sqs.delete_queue(QueueUrl=self.url)

    def received(self, run):
        out = self.stack.sqs.receive_message(QueueUrl=self.url, WaitTimeSeconds=5, MaxNumberOfMessages=10)
        return [m["Body"] for m in out.get("Messages", []) if run in m["Body"]]


def alert(stack, run, ctx, timeout):
    stack.s3.put_object(Bucket=stack.bucket, Key="smoke/config/rules.yaml",
                        Body=smoke_rules(ctx["value"], run).encode(), ContentType="text/yaml")
    # Each run starts from no smoke state: its alert is a new one, announced once.
    stack.s3.delete_object(Bucket=stack.bucket, Key="smoke/state/alert.json")
    with Subscription(stack, run) as queue:
        if "LambdaEndpoint" not in stack.outputs:  # the local stack runs no schedule
            clear_of_the_schedule()
        summary = invoke(stack, stack.outputs["AlertFunctionArn"], smoke_event(run, time.time()))
        firing = [r for r in summary.get("rules", []) if r.get("state") == "firing"]
        if not firing:
            raise Failed(f"the smoke rule did not fire: {json.dumps(summary)[:500]}")
        messages = wait("the smoke rule's notification on the smoke topic", timeout,
                        lambda: queue.received(run), every=0)
        if RULE not in messages[0]:
            raise Failed(f"the notification does not name {RULE}: {messages[0][:300]}")
        return f"{RULE} fired; {len(summary.get('sent', []))} sent, notification received on the smoke topic"


def canary_backup(run):
    data = f"Vigil canary backup, smoke run {run}\n".encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("canary.txt")
        info.size, info.mtime = len(data), int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def backup_sets(bucket):
    return json.dumps({"backup_sets": [{
        "name": CANARY_SET, "bucket": bucket, "prefix": "smoke/backups/",
        "max_age": "1h", "min_count": 1,
        "require": {"versioning": True, "encryption": "sse-kms"},
        "restore": "latest", "format": "tar_gz", "manifest": True,
    }]}, indent=2)


def backup_verify(stack, run, ctx, timeout):
    key = f"smoke/backups/canary-{run}.tar.gz"
    body = canary_backup(run)
    stack.s3.put_object(Bucket=stack.bucket, Key=key, Body=body, ChecksumAlgorithm="SHA256")
    manifest = {"key": key, "size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    stack.s3.put_object(Bucket=stack.bucket, Key=key + ".manifest.json",
                        Body=json.dumps(manifest).encode(), ContentType="application/json")
    stack.s3.put_object(Bucket=stack.bucket, Key="smoke/config/backup-sets.yaml",
                        Body=backup_sets(stack.bucket).encode(), ContentType="text/yaml")
    answer = invoke(stack, stack.outputs["BackupVerifyFunctionArn"], smoke_event(run, time.time()))
    location = answer.get("report", "")
    prefix = f"s3://{stack.bucket}/"
    if not location.startswith(prefix + "smoke/reports/"):
        raise Failed(f"no smoke report in the answer: {json.dumps(answer)[:500]}")
    report = json.loads(stack.s3.get_object(Bucket=stack.bucket, Key=location[len(prefix):])["Body"].read())
    sets = [s for s in report.get("sets", []) if s.get("name") == CANARY_SET]
    if not sets:
        raise Failed(f"the report has no set {CANARY_SET}")
    checks = sets[0].get("checks", [])
    bad = [f"{c['check']}: {c['status']} ({c['detail']})" for c in checks if c.get("status") != "ok"]
    if bad or sets[0].get("status") != "ok":
        raise Failed(f"the canary set did not pass: {'; '.join(bad) or sets[0].get('status')}")
    if key not in json.dumps(sets[0]):
        raise Failed(f"the report does not name this run's canary {key}")
    # Earlier runs' canaries go (the bucket's lifecycle expires what a failed run leaves).
    for page in stack.s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket, Prefix="smoke/backups/"):
        for obj in page.get("Contents", []):
            if not obj["Key"].startswith(key):
                stack.s3.delete_object(Bucket=stack.bucket, Key=obj["Key"])
    names = ", ".join(c["check"] for c in checks)
    return f"{CANARY_SET} ok ({names}); report {location}"


STEPS = [
    ("ingest: signed JSON push, read back", ingest_json),
    ("ingest: signed remote-write, read back", ingest_remote_write),
    ("alert: smoke event, rule fires to the smoke topic", alert),
    ("backup-verify: smoke event, canary set's report read back", backup_verify),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack")
    source.add_argument("--outputs")
    parser.add_argument("--summary")
    parser.add_argument("--result")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args()

    run = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    now = time.time()
    # The start of the last whole minute: its one-minute period has ended, so the alert rule
    # reads it complete. The value is this run's own, so that a read-back cannot be an
    # earlier run's point.
    ctx = {"at": float(int(now // 60) * 60 - 60), "value": float(int(now))}
    try:
        stack = Stack(args)
    except Exception as e:  # no such stack, no credentials, an output missing
        print(f"smoke: cannot read the stack: {type(e).__name__}: {e}", file=sys.stderr)
        if args.summary:
            with open(args.summary, "a") as f:
                f.write(f"### Smoke test: FAILED\n\nCannot read the stack: {type(e).__name__}: {e}\n\n")
        return 1
    name = args.stack or args.outputs
    results = []
    for title, step in STEPS:
        started = time.monotonic()
        try:
            detail, ok = step(stack, run, ctx, args.timeout), True
        except Failed as e:
            detail, ok = str(e), False
        except Exception as e:  # an AWS error: AccessDenied, a throttle, a dropped connection
            detail, ok = f"{type(e).__name__}: {e}", False
        seconds = time.monotonic() - started
        results.append({"step": title, "ok": ok, "seconds": round(seconds, 1), "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {title}  ({seconds:.1f} s)\n      {detail}", flush=True)

    passed = all(r["ok"] for r in results)
    print(f"smoke {run} against {name}: {'passed' if passed else 'FAILED'}")
    if args.result:
        with open(args.result, "w") as f:
            json.dump({"run": run, "stack": name, "passed": passed, "steps": results}, f, indent=2)
    if args.summary:
        with open(args.summary, "a") as f:
            f.write(f"### Smoke test of {name}: {'passed' if passed else 'FAILED'}\n\n")
            f.write("| step | result | seconds | detail |\n|---|---|---|---|\n")
            for r in results:
                detail = r["detail"].replace("|", "\\|").replace("\n", " ")
                f.write(f"| {r['step']} | {'pass' if r['ok'] else 'FAIL'} | {r['seconds']} | {detail} |\n")
            f.write("\n")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
