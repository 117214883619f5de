//! template.yaml against the workspace: every function in the template is a binary of
//! the workspace (and every binary under functions/ is in the template), every
//! environment variable the functions' code reads is set by the template (and none is
//! set that nothing reads), the queue and worker timings agree, and the template passes
//! cfn-lint after the SAM transform is expanded with aws-sam-translator.

use nomaly_tests::{reference_python, repo_root};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn lint_script(args: &[&str]) -> (bool, String) {
    let out = Command::new(reference_python())
        .arg(repo_root().join("tests").join("template_lint.py"))
        .args(args)
        .output()
        .expect("python runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn describe() -> Value {
    let (ok, text) = lint_script(&["--describe"]);
    assert!(ok, "{text}");
    serde_json::from_str(&text).expect("describe prints JSON")
}

/// `"NOMALY_..."` and `"RUST_LOG"` string literals in the Rust files under `dir`.
fn env_literals(dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("read source folder") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            env_literals(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source");
            for (i, _) in text.match_indices('"') {
                let rest = &text[i + 1..];
                let Some(end) = rest.find('"') else { continue };
                let literal = &rest[..end];
                let is_var = (literal.starts_with("NOMALY_") || literal == "RUST_LOG")
                    && literal
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                if is_var {
                    found.insert(literal.to_string());
                }
            }
        }
    }
}

#[test]
fn every_template_function_is_a_workspace_binary_and_back() {
    let d = describe();
    let functions = d["functions"].as_object().expect("functions");
    let mut binaries = BTreeSet::new();
    for (name, f) in functions {
        let binary = f["binary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} names no Binary"));
        assert_eq!(f["build_method"], "rust-cargolambda", "{name}");
        assert_eq!(f["runtime"], "provided.al2023", "{name}");
        assert_eq!(f["architectures"], serde_json::json!(["arm64"]), "{name}");
        assert_eq!(f["tracing"], "Active", "{name}");
        let manifest = repo_root()
            .join("functions")
            .join(binary)
            .join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|_| panic!("{name}: {} is missing", manifest.display()));
        assert!(
            text.contains(&format!("name = \"{binary}\"")),
            "{name}: package {binary}"
        );
        assert!(
            manifest.with_file_name("src").join("main.rs").is_file(),
            "{name}: {binary} has a main"
        );
        let workspace =
            std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("workspace manifest");
        assert!(
            workspace.contains(&format!("\"functions/{binary}\"")),
            "{binary} is a workspace member"
        );
        binaries.insert(binary.to_string());
    }
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo_root().join("functions"))
        .expect("functions/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        binaries, on_disk,
        "the template declares exactly the binaries under functions/"
    );
    assert_eq!(on_disk.len(), 8);
}

#[test]
fn every_variable_the_code_reads_is_set_and_none_is_stray() {
    let d = describe();
    let root = repo_root();
    for (name, f) in d["functions"].as_object().expect("functions") {
        let binary = f["binary"].as_str().expect("binary");
        let mut read = BTreeSet::new();
        for dir in [
            "shared/core/src",
            "shared/aws/src",
            "shared/lambda/src",
            &format!("functions/{binary}/src"),
        ] {
            env_literals(&root.join(dir), &mut read);
        }
        assert!(
            read.contains("NOMALY_TABLE") && read.contains("NOMALY_DETECT_BUDGET_MS"),
            "the scan finds variables: {read:?}"
        );
        let set: BTreeSet<String> = f["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|v| v.as_str().expect("name").to_string())
            .collect();
        let missing: Vec<&String> = read.difference(&set).collect();
        assert!(
            missing.is_empty(),
            "{name} reads {missing:?}, which the template does not set"
        );
        let stray: Vec<&String> = set.difference(&read).collect();
        assert!(
            stray.is_empty(),
            "{name} is given {stray:?}, which no code reads"
        );
    }
}

#[test]
fn queue_and_worker_timings_agree() {
    let d = describe();
    let worker = &d["functions"]["WorkerFunction"];
    let timeout = worker["timeout"].as_u64().expect("worker timeout");
    let visibility = d["queue_visibility_timeout"].as_u64().expect("visibility");
    assert!(
        visibility >= 6 * timeout,
        "visibility {visibility} s < 6 x worker timeout {timeout} s"
    );
    let env = &worker["env_values"];
    assert_eq!(
        env["NOMALY_MAX_RECEIVES"]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok()),
        d["queue_max_receives"].as_u64(),
        "the code's retry budget is the redrive policy's"
    );
    let lease: u64 = env["NOMALY_TASK_LEASE_SECS"]
        .as_str()
        .and_then(|v| v.parse().ok())
        .expect("lease");
    assert!(
        lease > timeout,
        "a task lease ({lease} s) must outlast the worker's timeout ({timeout} s)"
    );
    // A job that runs into the worker's timeout fails its whole invocation: alone in its
    // batch, it fails no other job.
    let triggers = d["worker_sqs_events"].as_array().expect("worker triggers");
    assert!(!triggers.is_empty(), "the worker has an SQS trigger");
    for trigger in triggers {
        assert_eq!(
            trigger["BatchSize"].as_u64(),
            Some(1),
            "one job per worker invocation, so a timeout fails only that job: {trigger}"
        );
        assert_eq!(
            trigger["FunctionResponseTypes"],
            serde_json::json!(["ReportBatchItemFailures"])
        );
    }
    let chunks = d["functions"]["ChunksFunction"]["timeout"]
        .as_u64()
        .expect("chunks timeout");
    let chunks_visibility = d["chunks_visibility_timeout"].as_u64().expect("visibility");
    assert!(
        chunks_visibility >= 6 * chunks,
        "chunks visibility {chunks_visibility} s < 6 x the chunks function's timeout {chunks} s"
    );
    assert_eq!(
        d["chunks_max_receives"].as_u64(),
        d["queue_max_receives"].as_u64(),
        "one retry budget (NOMALY_MAX_RECEIVES) serves both queues"
    );
    let notify = d["functions"]["NotifyFunction"]["timeout"]
        .as_u64()
        .expect("notify timeout");
    let alerts_visibility = d["alerts_visibility_timeout"].as_u64().expect("visibility");
    assert!(
        alerts_visibility >= 6 * notify,
        "alerts visibility {alerts_visibility} s < 6 x the notify function's timeout {notify} s"
    );
    assert!(
        notify > 10 * nomaly_core::webhook::http::TIMEOUT.as_secs(),
        "a batch of ten webhooks that all time out fits the notify function's {notify} s"
    );
    assert_eq!(
        d["alerts_max_receives"].as_u64(),
        d["queue_max_receives"].as_u64(),
        "one retry budget (NOMALY_MAX_RECEIVES) serves the alerts queue too"
    );
    for f in d["functions"].as_object().expect("functions").values() {
        for (k, v) in f["env_values"].as_object().expect("values") {
            if k.starts_with("NOMALY_") && k != "NOMALY_S3_PATH_STYLE" {
                assert!(
                    v.as_str().is_some_and(|s| s.parse::<u64>().is_ok()),
                    "{k} = {v} is not a whole number"
                );
            }
        }
    }
}

#[test]
fn template_passes_cfn_lint_after_the_sam_transform() {
    let (ok, text) = lint_script(&[]);
    println!("{text}");
    assert!(ok, "template.yaml has lint findings:\n{text}");
    assert!(text.contains("0 errors or warnings"), "{text}");
}

/// A parameter's default as a number.
fn parameter_default(d: &Value, name: &str) -> u64 {
    let p = &d["parameters"][name];
    assert_eq!(p["Type"], "Number", "{name} is a Number parameter");
    p["Default"]
        .as_u64()
        .or_else(|| p["Default"].as_str().and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("{name} has a numeric default: {p}"))
}

#[test]
fn stage_throttles_come_from_parameters_well_above_one_tenants_allowance() {
    use nomaly_core::limits::{RATE_LIMIT, RATE_WINDOW_SECS};
    let d = describe();
    // One tenant's allowance: the code's default, or the template's, whichever is larger.
    let env = &d["functions"]["ApiFunction"]["env_values"];
    let setting = |name: &str, default: u32| -> u64 {
        env[name]
            .as_str()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(u64::from(default))
    };
    let window = setting("NOMALY_RATE_WINDOW_SECS", RATE_WINDOW_SECS).max(1);
    let per_tenant = setting("NOMALY_RATE_LIMIT", RATE_LIMIT)
        .max(u64::from(RATE_LIMIT))
        .div_ceil(window);
    assert!(per_tenant > 0, "a per-tenant rate is set");
    for (stage, settings, rate, burst) in [
        (
            "HTTP",
            &d["http_route_settings"],
            "HttpThrottleRate",
            "HttpThrottleBurst",
        ),
        (
            "WebSocket",
            &d["ws_route_settings"],
            "WsThrottleRate",
            "WsThrottleBurst",
        ),
    ] {
        assert_eq!(
            settings["ThrottlingRateLimit"],
            serde_json::json!({ "Ref": rate }),
            "the {stage} stage's rate is the parameter {rate}"
        );
        assert_eq!(
            settings["ThrottlingBurstLimit"],
            serde_json::json!({ "Ref": burst }),
            "the {stage} stage's burst is the parameter {burst}"
        );
        let (rate_v, burst_v) = (parameter_default(&d, rate), parameter_default(&d, burst));
        // Ten tenants at their full allowance at once must not make the stage answer 429.
        assert!(
            rate_v >= 10 * per_tenant,
            "{stage}: {rate} = {rate_v} is not well above one tenant's {per_tenant} requests/s"
        );
        // A fixed window lets a tenant send twice its allowance across a boundary.
        assert!(
            burst_v >= 10 * 2 * per_tenant && burst_v >= rate_v,
            "{stage}: {burst} = {burst_v} is too small"
        );
        assert!(
            burst_v <= 5000,
            "{stage}: {burst} = {burst_v} exceeds the account's default regional burst"
        );
    }
    // The api function's concurrency is reserved from a parameter (0 reserves nothing).
    assert_eq!(
        d["api_reserved_concurrency"],
        serde_json::json!({ "Fn::If": [
            "ReservesApiConcurrency",
            { "Ref": "ApiReservedConcurrency" },
            { "Ref": "AWS::NoValue" }
        ] }),
        "api's ReservedConcurrentExecutions comes from ApiReservedConcurrency"
    );
    assert_eq!(
        d["conditions"]["ReservesApiConcurrency"],
        serde_json::json!({ "Fn::Not": [{ "Fn::Equals": [{ "Ref": "ApiReservedConcurrency" }, "0"] }] })
    );
    let reserved = parameter_default(&d, "ApiReservedConcurrency");
    assert!(
        reserved > 0,
        "api's concurrency is reserved by default ({reserved})"
    );
    // The account keeps 100 unreserved of its default 1,000.
    assert!(reserved <= 900, "ApiReservedConcurrency = {reserved}");
}
