//! Reports through the Lambda handlers on the embedded stack: `POST
//! /v1/models/{id}/reports` through the router, the `report` job through the worker
//! handler, the page read back from the blob store and its download URL from the API.

use axum::http::StatusCode;
use nomaly_core::domain::{EventType, TenantId};
use nomaly_core::ids::TaskId;
use nomaly_core::service::report::report_key;
use serde_json::{json, Value};

use crate::support::{env, rows};

/// A column name that would run script if a page printed it unescaped.
const HOSTILE: &str = "<img src=x onerror=alert(1)>";

async fn trained_model(e: &crate::support::Env, key: &str) -> String {
    let (s, _, body) = e
        .post_models(key,
            json!({"algorithm": "zscore", "rows": rows(200), "columns": ["temp, °C", HOSTILE, "load & \"x\""]}),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    e.drain().await;
    body["model_id"].as_str().expect("model id").to_string()
}

#[tokio::test]
async fn a_report_plots_every_score_and_explains_the_top_rows() {
    let e = env();
    let key = e.key("acme").await;
    let model = trained_model(&e, &key).await;
    let (s, _, body) = e
        .post_reports(&key, &model, json!({"rows": rows(200)}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["task"]["kind"], "report");
    let task = body["task"]["id"].as_str().expect("task").to_string();
    let (s, early) = e.get(&format!("/v1/tasks/{task}/report"), &key).await;
    assert_eq!(s, StatusCode::CONFLICT, "not ready yet: {early}");
    e.drain().await;

    let (_, done) = e.get(&format!("/v1/tasks/{task}"), &key).await;
    assert_eq!(done["status"], "completed", "{done}");
    let completed: Vec<Value> = e
        .events("acme")
        .await
        .into_iter()
        .filter(|ev| ev.kind == EventType::TaskCompleted && ev.payload["task_id"] == task.as_str())
        .map(|ev| ev.payload)
        .collect();
    assert_eq!(completed.len(), 1);
    let payload = &completed[0];
    assert_eq!(payload["kind"], "report");
    assert_eq!(payload["rows"], 201);
    assert_eq!(payload["report_url"], format!("/v1/tasks/{task}/report"));
    let anomalies = payload["anomalies"].as_u64().expect("anomalies") as usize;

    // The same model and rows through detection: the report plots the same labels.
    let (_, _, detected) = e
        .post_detect(&key, json!({"model_id": model, "rows": rows(200)}))
        .await;
    assert_eq!(detected["anomalies"].as_u64(), Some(anomalies as u64));
    assert!(anomalies >= 1, "the outlier row is an anomaly");

    let (s, grant) = e.get(&format!("/v1/tasks/{task}/report"), &key).await;
    assert_eq!(s, StatusCode::OK, "{grant}");
    let url = grant["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!(
            "http://127.0.0.1:9/downloads/tenants/acme/reports/{task}.html?"
        )),
        "{url}"
    );
    assert_eq!(grant["content_type"], "text/html; charset=utf-8");
    assert!(grant["expires_at"].as_str().is_some());

    let tenant = TenantId::parse("acme").expect("tenant");
    let page = e
        .services()
        .blobs
        .get_blob(&report_key(&tenant, &TaskId::parse(&task).expect("id")))
        .await
        .expect("read")
        .expect("the page is stored");
    let html = String::from_utf8(page).expect("utf-8");
    assert_eq!(payload["bytes"].as_u64(), Some(html.len() as u64));
    // Two plots, one mark per anomaly, one point per other row, the threshold on both.
    assert!(html.contains("aria-label=\"score distribution with the threshold\""));
    assert!(html.contains("aria-label=\"scores in row order with the threshold\""));
    assert_eq!(html.matches("class=\"anomaly\"").count(), anomalies);
    assert_eq!(html.matches("class=\"point\"").count(), 201 - anomalies);
    assert_eq!(html.matches("class=\"threshold\"").count(), 2);
    assert!(html.contains("<title>row 200: "), "the outlier is marked");
    let bins: usize = html
        .split("class=\"bin\"")
        .skip(1)
        .filter_map(|s| {
            s.split(": ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert_eq!(bins, 201, "the histogram counts every row");
    // Twenty explained rows, the outlier first, each with its feature bars.
    let top = html.split("<table id=\"top\">").nth(1).expect("top table");
    let top = top.split("</table>").next().expect("table end");
    assert_eq!(top.matches("<tr><td class=\"n\">").count(), 20);
    assert!(top.starts_with("<tr><th>row</th>") && top.contains("<tr><td class=\"n\">200</td>"));
    assert!(top.matches("class=\"bar\"").count() >= 20);
    // The profile of the rows, one line per column.
    let profile = html
        .split("<table id=\"profile\">")
        .nth(1)
        .expect("profile");
    let profile = profile.split("</table>").next().expect("end");
    assert_eq!(profile.matches("<tr><td>").count(), 3);
    assert!(
        profile.contains("<tr><td>temp, °C</td><td>numeric</td>"),
        "{profile}"
    );
    assert!(
        html.contains("201 rows, 3 columns, 0 ragged rows"),
        "names with commas and quotes"
    );
    // Hostile names are shown, escaped; the page has no script at all.
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("load &amp; &quot;x&quot;"));
    assert!(!html.contains(HOSTILE) && !html.to_ascii_lowercase().contains("<script"));
}

#[tokio::test]
async fn reports_refuse_what_they_cannot_do() {
    let e = env();
    let key = e.key("acme").await;
    let other = e.key("globex").await;
    let model = trained_model(&e, &key).await;
    let path = format!("/v1/models/{model}/reports");
    let cases = [
        (&other, path.as_str(), json!({"rows": rows(5)}), 404),
        (
            &key,
            "/v1/models/mdl_nope/reports",
            json!({"rows": rows(5)}),
            404,
        ),
        (&key, path.as_str(), json!({"rows": [[1.0, 2.0]]}), 422),
        (&key, path.as_str(), json!({}), 400),
        (
            &key,
            path.as_str(),
            json!({"rows": rows(5), "dataset_id": "dst_x"}),
            400,
        ),
        (
            &key,
            path.as_str(),
            json!({"rows": rows(5), "colour": "red"}),
            400,
        ),
        (
            &key,
            path.as_str(),
            json!({"dataset_id": "dst_01HZZZZZZZZZZZZZZZZZZZZZZZ"}),
            404,
        ),
        (
            &key,
            path.as_str(),
            json!({"rows": [[1.0, f64::MAX, 3.0]], "exclude_columns": ["a"]}),
            400,
        ),
    ];
    for (k, p, body, want) in cases {
        let (s, h, answer) = e.post_json(p, k, body.clone()).await;
        assert_eq!(s.as_u16(), want, "{p} {body}: {answer}");
        assert_eq!(h["content-type"], "application/problem+json");
    }
    // Only report tasks have a report, and only the tenant's.
    let train = e.train(&key, 20).await;
    e.drain().await;
    let (s, _) = e.get(&format!("/v1/tasks/{train}/report"), &key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, body) = e.post_json(&path, &key, json!({"rows": rows(5)})).await;
    assert_eq!(s, StatusCode::ACCEPTED);
    e.drain().await;
    let task = body["task"]["id"].as_str().expect("task");
    let (s, _) = e.get(&format!("/v1/tasks/{task}/report"), &other).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "another tenant's report");
    let (s, _) = e.get(&format!("/v1/tasks/{task}/report"), &key).await;
    assert_eq!(s, StatusCode::OK);
}
