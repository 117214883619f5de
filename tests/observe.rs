//! What operators look at, on the real `nomaly serve`: the dashboard driven in headless
//! Chromium, a report downloaded through its signed URL, the Prometheus counters at
//! `/metrics`, and the JSON log lines carrying their request, tenant, task and job.

use nomaly_tests::server::{Api, Server};
use nomaly_tests::{repo_root, scratch, test_data};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Reads one counter's value from Prometheus text.
fn counter(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
}

/// The page trains a model in a real browser: `tests/browser/dashboard.mjs` (Playwright
/// driving Debian's Chromium, as `tests/run.sh` installs them) uploads ODDS cardio,
/// reads its profile, trains iforest, waits for the task's progress bar to reach 100 %,
/// runs detection, plots the scores, opens an anomaly's explanation and takes a
/// screenshot. The API is then asked whether what the page showed is true.
#[tokio::test]
async fn the_dashboard_trains_and_detects_in_a_real_browser() {
    let dir = scratch("dashboard");
    let server = Server::start(
        &dir.join("data"),
        &["--allow-loopback-webhooks"],
        &[("NOMALY_RATE_LIMIT", "1000")],
    );
    let key = server.key("demo");
    let script = repo_root().join("tests/browser/dashboard.mjs");
    assert!(
        repo_root()
            .join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "run `npm ci --prefix tests/browser` (tests/run.sh does)"
    );
    // Kept after the run (target/ is not committed) for a person to look at.
    let screenshot = repo_root().join("target").join("dashboard.png");
    let cardio = test_data("tabular").join("cardio.csv");
    let out = Command::new("node")
        .arg(&script)
        .env("NOMALY_URL", &server.url)
        .env("NOMALY_API_KEY", &key)
        .env("DASHBOARD_CSV", &cardio)
        .env("DASHBOARD_EXCLUDE", "label")
        .env("DASHBOARD_SCREENSHOT", &screenshot)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser run failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log tail:\n{}",
        server
            .log_text()
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .join("\n")
    );
    println!("browser: {}", stdout.trim());
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "a real screenshot"
    );
    println!("screenshot: {} ({} bytes)", screenshot.display(), png.len());

    // What the page did, as the API sees it: one profiled dataset of cardio's size, one
    // iforest model on its 21 features, its training task completed at 100 %.
    let api = Api::new(&server, &key);
    let (_, datasets) = api.call("GET", "/v1/datasets", None).await;
    assert_eq!(
        datasets["items"].as_array().map(Vec::len),
        Some(1),
        "{datasets}"
    );
    assert_eq!(datasets["items"][0]["profile"]["rows"], 1831);
    let (_, models) = api.call("GET", "/v1/models", None).await;
    let model = &models["items"][0];
    assert_eq!(model["algorithm"], "iforest");
    assert_eq!(model["feature_names"].as_array().map(Vec::len), Some(21));
    let (_, tasks) = api.call("GET", "/v1/tasks", None).await;
    let train: Vec<&Value> = tasks["items"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter(|t| t["kind"] == "train")
        .collect();
    assert_eq!(train.len(), 1, "{tasks}");
    assert_eq!(
        (train[0]["status"].as_str(), train[0]["progress"].as_u64()),
        (Some("completed"), Some(100))
    );
    let summary: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or("{}"))
        .expect("the script's JSON summary");
    assert_eq!(summary["rows_plotted"], 1831, "{summary}");
    let (_, events) = api.call("GET", "/v1/events?limit=1000", None).await;
    let detected: Vec<&Value> = events["items"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "anomaly.detected")
        .collect();
    assert!(
        !detected.is_empty(),
        "the page's detection published anomaly.detected"
    );
    assert_eq!(
        summary["anomalies_marked"], detected[0]["payload"]["anomalies"],
        "the plot marks as many anomalies as the detection found"
    );
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}

/// A report on a dataset, downloaded through its signed URL; the counters at
/// `/metrics`; and the log lines of a request and of a job.
#[tokio::test]
async fn reports_metrics_and_logs_on_the_real_server() {
    let dir = scratch("observe");
    let server = Server::start(
        &dir.join("data"),
        &["--log-format", "json"],
        &[("NOMALY_MANAGEMENT_TOKEN", "management-secret")],
    );
    let key = server.key("acme");
    let other = server.key("globex");
    let api = Api::new(&server, &key);
    let http = reqwest::Client::new();
    let cardio = std::fs::read(test_data("tabular").join("cardio.csv")).expect("cardio");
    let (dataset, _) = api.upload("cardio.csv", cardio).await;
    let (s, d) = api
        .call("GET", &format!("/v1/datasets/{dataset}"), None)
        .await;
    assert_eq!((s, d["status"].as_str()), (200, Some("profiled")), "{d}");
    let (train, answer) = api
        .accepted(
            "/v1/models",
            serde_json::json!({"algorithm": "iforest", "dataset_id": dataset, "exclude_columns": ["label"]}),
        )
        .await;
    let model = answer["model_id"].as_str().expect("model").to_string();
    assert_eq!(
        api.wait_task(&train, Duration::from_secs(60)).await["status"],
        "completed"
    );

    let (report, _) = api
        .accepted(
            &format!("/v1/models/{model}/reports"),
            serde_json::json!({"dataset_id": dataset, "exclude_columns": ["label"]}),
        )
        .await;
    let done = api.wait_task(&report, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let (s, grant) = api
        .call("GET", &format!("/v1/tasks/{report}/report"), None)
        .await;
    assert_eq!(s, 200, "{grant}");
    let url = grant["url"].as_str().expect("url");
    let page = http.get(url).send().await.expect("download");
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .starts_with("default-src 'none'"));
    let html = page.text().await.expect("html");
    assert!(html.contains("dataset cardio.csv") && html.contains("<b>1831</b>"));
    assert!(
        html.matches("<svg").count() >= 3,
        "histogram, series and bars"
    );
    assert_eq!(done["kind"], "report");
    // A changed signature, another key, or another tenant: no report.
    let tampered = url.replace("sig=", "sig=0");
    assert_eq!(http.get(&tampered).send().await.expect("get").status(), 403);
    let elsewhere = url.replace(&format!("{report}.html"), &format!("{train}.html"));
    assert_eq!(
        http.get(&elsewhere).send().await.expect("get").status(),
        403
    );
    let (s, _) = Api::new(&server, &other)
        .call("GET", &format!("/v1/tasks/{report}/report"), None)
        .await;
    assert_eq!(s, 404);

    // One inline detection, then the counters.
    let (s, _) = api
        .call(
            "POST",
            "/v1/detect",
            Some(serde_json::json!({"algorithm": "zscore", "rows": [[1.0], [1.1], [0.9], [9.0]]})),
        )
        .await;
    assert_eq!(s, 200);
    let metrics_url = format!("{}/metrics", server.url);
    for bearer in [None, Some("guess"), Some(key.as_str())] {
        let mut request = http.get(&metrics_url);
        if let Some(b) = bearer {
            request = request.bearer_auth(b);
        }
        let refused = request.send().await.expect("metrics");
        assert_eq!(
            refused.status(),
            401,
            "no token, a wrong one or a tenant's key is refused, even from loopback"
        );
    }
    assert!(
        !server.data_dir.join("management-token").exists(),
        "the variable's token writes no file"
    );
    let answer = http
        .get(&metrics_url)
        .bearer_auth("management-secret")
        .send()
        .await
        .expect("metrics");
    assert_eq!(answer.status(), 200);
    assert!(answer.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .starts_with("text/plain; version=0.0.4"));
    let text = answer.text().await.expect("text");
    println!("{text}");
    assert_eq!(counter(&text, "nomaly_cold_starts_total"), 1.0);
    assert!(counter(&text, "nomaly_http_requests_total") >= 10.0);
    assert!(
        counter(&text, "nomaly_http_client_errors_total") >= 1.0,
        "the 404"
    );
    assert_eq!(counter(&text, "nomaly_http_server_errors_total"), 0.0);
    assert!(
        counter(&text, "nomaly_rows_scored_total") >= 1831.0 + 4.0,
        "report and detection"
    );
    assert!(counter(&text, "nomaly_anomalies_found_total") >= 1.0);
    assert!(
        counter(&text, "nomaly_jobs_succeeded_total") >= 2.0,
        "training and report"
    );
    assert_eq!(counter(&text, "nomaly_jobs_failed_total"), 0.0);
    assert_eq!(counter(&text, "nomaly_detect_latency_seconds_count"), 1.0);

    // Log lines carry the spans they were logged in.
    let log = server.log_text();
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let queued = lines
        .iter()
        .find(|l| l["message"] == "job queued" && l["kind"] == "report")
        .expect("the report's `job queued` line");
    let request = queued["spans"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "request"))
        .expect("logged inside the request's span");
    assert_eq!(request["tenant"], "acme");
    assert!(request["correlation_id"]
        .as_str()
        .is_some_and(|c| c.starts_with("req_")));
    assert_eq!(request["path"], format!("/v1/models/{model}/reports"));
    let completed = lines
        .iter()
        .find(|l| l["message"] == "task completed" && l["task_id"] == report.as_str())
        .expect("the report's `task completed` line");
    let job = completed["spans"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "job"))
        .expect("logged inside the job's span");
    assert_eq!(job["tenant"], "acme");
    assert_eq!(job["kind"], "report");
    assert_eq!(job["task_id"], report.as_str());
    assert!(job["job_id"]
        .as_str()
        .is_some_and(|j| j.starts_with("job_")));
    assert!(
        !log.contains(&key) && !log.contains("sig="),
        "no key or signature is logged"
    );
    drop(server);
    std::fs::remove_dir_all(&dir).ok();
}
