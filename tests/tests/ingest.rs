//! `ingest` end to end: the real bootstrap behind a local Runtime API, CloudWatch in the local
//! emulator. Every test reads back from the emulator what the function wrote.

use serde_json::json;
use vigil_e2e::{
    Function, LocalAws, binary, http_response, json_push_event, log_batch_event, sample_config,
    sample_event, sample_push, stamp_logs, stamp_push, stamp_remote_write, unique,
    whole_minute_ago,
};

async fn ingest(aws: &LocalAws) -> Function {
    Function::start(
        "ingest",
        &binary("ingest"),
        &[("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str())],
    )
    .await
}

#[tokio::test]
async fn sample_push_lands_in_cloudwatch() {
    let aws = LocalAws::connect().await;
    let mut function = ingest(&aws).await;
    let namespace = unique("E2E/E2E");
    let at = whole_minute_ago(2);
    let mut push = sample_push();
    push["namespace"] = json!(namespace);
    stamp_push(&mut push, at);

    let response = function
        .invoke(&json_push_event(&push))
        .await
        .expect_response();
    let (status, body) = http_response(&response);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 2);
    assert_eq!(response["headers"]["content-type"], "application/json");

    let points = aws
        .points_near(&namespace, "latency", &[("service", "checkout")], "Sum", at)
        .await;
    assert_eq!(points, vec![(at, 312.5)]);
    let orders = aws
        .points_near(&namespace, "orders", &[("service", "checkout")], "Sum", at)
        .await;
    assert_eq!(orders, vec![(at, 42.0)]);
}

#[tokio::test]
async fn bad_entries_are_refused_and_the_valid_ones_stored() {
    let aws = LocalAws::connect().await;
    let mut function = ingest(&aws).await;
    let namespace = unique("E2E/E2E");
    let at = whole_minute_ago(2);
    let stamp = at.to_rfc3339();
    let push = json!({"namespace": namespace, "metrics": [
        {"name": "good", "value": 7, "timestamp": stamp},
        {"name": "nan", "value": "NaN", "timestamp": stamp},
        {"name": "huge", "value": 1e300, "timestamp": stamp},
        {"name": "ancient", "value": 1, "timestamp": "2020-01-01T00:00:00Z"},
    ]});
    let (status, body) = http_response(
        &function
            .invoke(&json_push_event(&push))
            .await
            .expect_response(),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["stored"], 1);
    let reasons: Vec<&str> = body["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| r["reason"].as_str().expect("reason"))
        .collect();
    assert_eq!(reasons, ["malformed_metric", "out_of_range", "too_old"]);
    // One EMF line for the request counts the rejections in CloudWatch and says why.
    let logs = function.logs();
    let line: serde_json::Value = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["Source"] == "json" && l["_aws"].is_object())
        .unwrap_or_else(|| panic!("no EMF line in {logs:?}"));
    assert_eq!(line["SamplesStored"], 1.0);
    assert_eq!(line["SamplesRejected"], 3.0);
    assert_eq!(line["rejected"]["too_old"]["count"], 1);
    assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Vigil");
    let good = aws.points_near(&namespace, "good", &[], "Sum", at).await;
    assert_eq!(good, vec![(at, 7.0)]);
    let huge = aws.points_near(&namespace, "huge", &[], "Sum", at).await;
    assert!(huge.is_empty(), "{huge:?}");
}

#[tokio::test]
async fn unreadable_requests_get_4xx_and_store_nothing() {
    let aws = LocalAws::connect().await;
    let mut function = ingest(&aws).await;
    let mut event = json_push_event(&sample_push());
    event["body"] = json!("{\"metrics\": [");
    let (status, body) = http_response(&function.invoke(&event).await.expect_response());
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("malformed JSON push")
    );

    let mut event = json_push_event(&sample_push());
    event["headers"]["content-type"] = json!("application/x-protobuf");
    let (status, _) = http_response(&function.invoke(&event).await.expect_response());
    assert_eq!(status, 415);

    let mut event = json_push_event(&sample_push());
    event["requestContext"]["http"]["method"] = json!("GET");
    let (status, _) = http_response(&function.invoke(&event).await.expect_response());
    assert_eq!(status, 405);

    // The same process still serves a valid push afterwards.
    let namespace = unique("E2E/E2E");
    let mut push = sample_push();
    push["namespace"] = json!(namespace);
    let at = whole_minute_ago(2);
    stamp_push(&mut push, at);
    let (status, _) = http_response(
        &function
            .invoke(&json_push_event(&push))
            .await
            .expect_response(),
    );
    assert_eq!(status, 200);
    let points = aws
        .points_near(&namespace, "orders", &[("service", "checkout")], "Sum", at)
        .await;
    assert_eq!(points, vec![(at, 42.0)]);
}

#[tokio::test]
async fn cloudwatch_unavailable_is_a_5xx_and_nothing_is_reported_stored() {
    // A loopback port with nothing listening: every PutMetricData attempt is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let mut function = Function::start(
        "ingest",
        &binary("ingest"),
        &[("VIGIL_AWS_ENDPOINT_URL", dead.as_str())],
    )
    .await;
    let (status, body) = http_response(
        &function
            .invoke(&json_push_event(&sample_push()))
            .await
            .expect_response(),
    );
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["stored"], 0);
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("PutMetricData"),
        "{body}"
    );
}

#[tokio::test]
async fn events_of_other_shapes_fail_the_invocation() {
    let aws = LocalAws::connect().await;
    let mut function = ingest(&aws).await;
    let error = function
        .invoke(&json!({"hello": "world"}))
        .await
        .expect_error();
    assert_eq!(error["errorType"], "Vigil.InvalidInput");
    assert!(
        error["errorMessage"]
            .as_str()
            .expect("message")
            .contains("neither a Function URL request")
    );
}

#[tokio::test]
async fn the_emf_sink_writes_log_lines_instead_of_api_calls() {
    let aws = LocalAws::connect().await;
    let mut function = Function::start(
        "ingest",
        &binary("ingest"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_SINK", "emf"),
        ],
    )
    .await;
    let namespace = unique("E2E/E2E");
    let at = whole_minute_ago(2);
    let mut push = sample_push();
    push["namespace"] = json!(namespace);
    stamp_push(&mut push, at);
    let (status, body) = http_response(
        &function
            .invoke(&json_push_event(&push))
            .await
            .expect_response(),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 2);

    let logs = function.logs();
    let line: serde_json::Value = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| {
            l["_aws"]["CloudWatchMetrics"][0]["Namespace"] == namespace.as_str()
                && l.get("latency").is_some()
        })
        .unwrap_or_else(|| panic!("no EMF line for {namespace} in {logs:?}"));
    assert_eq!(line["latency"], json!([312.5]));
    assert_eq!(line["service"], "checkout");
    assert_eq!(line["_aws"]["Timestamp"], at.timestamp_millis());

    // No API call was made: the emulator's CloudWatch has nothing in that namespace.
    let points = aws
        .points_near(&namespace, "latency", &[("service", "checkout")], "Sum", at)
        .await;
    assert!(points.is_empty(), "{points:?}");
}

/// The sample remote-write and log events through the real binary, with the sample ingest
/// config: labels mapped, log lines turned into metrics, all read back from CloudWatch.
#[tokio::test]
async fn sample_remote_write_and_log_events_land_in_cloudwatch() {
    let aws = LocalAws::connect().await;
    let namespace = unique("E2E/E2E");
    let bucket = aws.create_bucket("vigil-ingest-config").await;
    let config = sample_config("ingest.example.yaml").replace("Shop/Checkout", &namespace);
    aws.put_object(&bucket, "ingest.yaml", config).await;
    let location = format!("s3://{bucket}/ingest.yaml");
    let mut function = Function::start(
        "ingest",
        &binary("ingest"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_INGEST_CONFIG", location.as_str()),
        ],
    )
    .await;
    let at = whole_minute_ago(2);

    let mut rw = sample_event("function-url-remote-write.json");
    stamp_remote_write(&mut rw, at);
    let (status, body) = http_response(&function.invoke(&rw).await.expect_response());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 5);
    assert_eq!(body["series"], 5);
    // `instance` and `pod` dropped by default, `job` renamed to `service`.
    let up = aws
        .points_near(&namespace, "up", &[("service", "checkout")], "Maximum", at)
        .await;
    assert_eq!(up, vec![(at, 1.0)]);
    let errors = aws
        .points_near(
            &namespace,
            "http_requests_total",
            &[("code", "500"), ("method", "POST"), ("service", "checkout")],
            "Maximum",
            at,
        )
        .await;
    assert_eq!(errors, vec![(at, 12.0)]);
    let inf = aws
        .points_near(
            &namespace,
            "http_request_duration_seconds_bucket",
            &[("le", "+Inf"), ("service", "checkout")],
            "Maximum",
            at,
        )
        .await;
    assert_eq!(inf, vec![(at, 1555.0)]);

    let mut logs = sample_event("cloudwatch-logs-subscription.json");
    stamp_logs(&mut logs, at, Some(&namespace));
    let out = function.invoke(&logs).await.expect_response();
    assert_eq!(out["lines"], 3, "{out}");
    assert_eq!(out["stored"], 3, "{out}");
    assert_eq!(out["unmatched"], 1, "{out}");
    let emf = aws
        .points_near(
            &namespace,
            "checkout_duration",
            &[("service", "checkout")],
            "Sum",
            at,
        )
        .await;
    assert_eq!(emf, vec![(at, 399.5)]);
    let latency = aws
        .points_near(
            &namespace,
            "request_latency",
            &[("service", "checkout"), ("status", "502")],
            "Maximum",
            at,
        )
        .await;
    assert_eq!(latency, vec![(at, 1834.2)]);
}

#[tokio::test]
async fn an_undecodable_log_batch_fails_the_invocation() {
    let aws = LocalAws::connect().await;
    let mut function = ingest(&aws).await;
    let error = function
        .invoke(&json!({"awslogs": {"data": "H4sIAAAA-not-base64!"}}))
        .await
        .expect_error();
    assert_eq!(error["errorType"], "Vigil.InvalidInput");
    assert!(
        error["errorMessage"]
            .as_str()
            .expect("message")
            .contains("awslogs.data"),
        "{error}"
    );
}

/// No sender writes Vigil's own signals, and ingest does not read its own log group: each
/// forgery and loop tried through the real binary, and CloudWatch read back.
#[tokio::test]
async fn vigils_own_signals_cannot_be_forged_or_looped() {
    let aws = LocalAws::connect().await;
    let mut function = ingest(&aws).await;
    let at = whole_minute_ago(2);
    let own = unique("Vigil/forged");
    let heartbeat = json!({"namespace": "Vigil", "metrics": [
        {"name": "Heartbeat", "value": 1, "dimensions": {"Function": "alert"}, "timestamp": at.to_rfc3339()}]});
    let mut tried = 0;
    for namespace in ["Vigil", "vigil", "Vigil/alert", own.as_str()] {
        let mut push = heartbeat.clone();
        push["namespace"] = json!(namespace);
        let response = function
            .invoke(&json_push_event(&push))
            .await
            .expect_response();
        let (status, body) = http_response(&response);
        assert_eq!(status, 403, "{namespace}: {body}");
        tried += 1;
    }
    let forged = aws
        .points_near("Vigil", "Heartbeat", &[("Function", "alert")], "Sum", at)
        .await;
    assert!(forged.is_empty(), "a forged heartbeat landed: {forged:?}");

    // EMF into Vigil's namespace beside a service's own metric: the one refused, the other kept.
    let shop = unique("E2E/Shop");
    let line = json!({"_aws": {"Timestamp": at.timestamp_millis(), "CloudWatchMetrics": [
        {"Namespace": "Vigil", "Dimensions": [["Function"]], "Metrics": [{"Name": "Heartbeat"}]},
        {"Namespace": shop, "Metrics": [{"Name": "orders"}]}]},
        "Function": "alert", "Heartbeat": 1, "orders": 5})
    .to_string();
    let out = function
        .invoke(&log_batch_event(
            "/ecs/checkout",
            std::slice::from_ref(&line),
            at,
        ))
        .await
        .expect_response();
    assert_eq!(out["stored"], 1, "{out}");
    assert_eq!(out["rejected"]["vigil_namespace"]["count"], 1, "{out}");
    tried += 1;
    let orders = aws.points_near(&shop, "orders", &[], "Sum", at).await;
    assert_eq!(orders, vec![(at, 5.0)]);

    // EMF of a Lambda function's log group was extracted by CloudWatch already: refused.
    let out = function
        .invoke(&log_batch_event(
            "/aws/lambda/checkout",
            std::slice::from_ref(&line),
            at,
        ))
        .await
        .expect_response();
    assert_eq!(out["stored"], 0, "{out}");
    assert_eq!(
        out["rejected"]["emf_extracted_by_cloudwatch"]["count"], 1,
        "{out}"
    );
    tried += 1;

    // Ingest's own log group (Lambda sets AWS_LAMBDA_LOG_GROUP_NAME): skipped, not read.
    let out = function
        .invoke(&log_batch_event("/aws/lambda/ingest", &[line], at))
        .await
        .expect_response();
    assert_eq!(out["skipped"], "own_log_group", "{out}");
    tried += 1;
    println!("forgery and loop cases tried: {tried}, all refused");
}

/// Remote-write 2.0 through the real binary: the written counts come back in the spec's
/// headers, and a counter the metadata names keeps its pods in CloudWatch.
#[tokio::test]
async fn remote_write_2_lands_in_cloudwatch_with_the_written_counts() {
    use base64::Engine;
    use vigil_ingest::remote_write::Sample;
    let aws = LocalAws::connect().await;
    let namespace = unique("E2E/RW2");
    let config_dir = std::env::temp_dir().join(unique("vigil-rw2"));
    std::fs::create_dir_all(&config_dir).expect("dir");
    let config = config_dir.join("ingest.yaml");
    std::fs::write(
        &config,
        format!("remote_write: {{namespace: {namespace}}}\n"),
    )
    .expect("config");
    let mut function = Function::start(
        "ingest",
        &binary("ingest"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_INGEST_CONFIG", config.to_str().expect("path")),
        ],
    )
    .await;
    let at = whole_minute_ago(2);
    let series: Vec<vigil_ingest::remote_write_v2::Plain<'_>> = ["api-0", "api-1", "api-2"]
        .iter()
        .enumerate()
        .map(|(i, pod)| {
            (
                vec![("__name__", "requests"), ("job", "api"), ("pod", *pod)],
                vec![Sample {
                    value: 100.0 * (i + 1) as f64,
                    timestamp: at.timestamp_millis(),
                }],
                1,
            )
        })
        .collect();
    let mut event = sample_event("function-url-remote-write.json");
    event["body"] = json!(
        base64::engine::general_purpose::STANDARD
            .encode(vigil_ingest::remote_write_v2::encode(&series))
    );
    event["headers"]["content-type"] =
        json!("application/x-protobuf;proto=io.prometheus.write.v2.Request");
    event["headers"]["x-prometheus-remote-write-version"] = json!("2.0.0");
    let response = function.invoke(&event).await.expect_response();
    let (status, body) = http_response(&response);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        response["headers"]["x-prometheus-remote-write-samples-written"], "3",
        "{response}"
    );
    for (i, pod) in ["api-0", "api-1", "api-2"].iter().enumerate() {
        let points = aws
            .points_near(
                &namespace,
                "requests",
                &[("job", "api"), ("pod", pod)],
                "Maximum",
                at,
            )
            .await;
        assert_eq!(points, vec![(at, 100.0 * (i + 1) as f64)], "{pod}");
    }
    let _ = std::fs::remove_dir_all(&config_dir);
}
