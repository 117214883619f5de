//! Runs the README's quickstart block as written (only the port differs: a free one
//! instead of 8080) and checks what each step printed.

use nomaly_tests::repo_root;
use serde_json::Value;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

fn quickstart_block() -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README");
    let start = readme
        .find("<!-- quickstart:begin -->")
        .expect("quickstart begin marker");
    let end = readme
        .find("<!-- quickstart:end -->")
        .expect("quickstart end marker");
    let block = &readme[start..end];
    let code_start = block.find("```sh\n").expect("a sh code block") + "```sh\n".len();
    let code_end = block.rfind("```").expect("closing fence");
    block[code_start..code_end].to_string()
}

#[test]
fn the_readme_quickstart_runs_as_written() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let script = quickstart_block().replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    assert!(script.contains("nomaly serve") && script.contains("nomaly watch"));
    // Background jobs are stopped however the script ends.
    let wrapped =
        format!("trap 'jobs -p | xargs -r kill 2>/dev/null' EXIT\nset -euo pipefail\n{script}");
    let dir = nomaly_tests::scratch("quickstart");
    let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&wrapped)
        .current_dir(repo_root())
        .process_group(0)
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("bash runs");
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Whatever is left of the group (a server, a watcher) goes.
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stderr(std::process::Stdio::null())
        .status();
    let _ = child.wait();
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "the quickstart failed or hung ({status:?})\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );

    let json_lines: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect();
    let find = |pred: &dyn Fn(&Value) -> bool| json_lines.iter().find(|v| pred(v)).cloned();
    // The inline z-score example flags the last row only.
    let inline = find(&|v| v["algorithm"] == "zscore").expect("inline detection printed");
    assert_eq!(
        inline["labels"],
        serde_json::json!([0, 0, 0, 0, 1]),
        "{inline}"
    );
    // The profile of the sample.
    let profile = find(&|v| v.get("column_profiles").is_some()).expect("profile printed");
    assert_eq!(profile["rows"], 5000);
    assert_eq!(profile["columns"], 6);
    // The watched events: subscribed, progress, exactly one completion, in that order.
    let kinds: Vec<&str> = json_lines
        .iter()
        .filter_map(|v| v["type"].as_str())
        .collect();
    assert_eq!(kinds.first(), Some(&"subscribed"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"task.completed"), "{kinds:?}");
    assert!(kinds.contains(&"task.progress"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "task.completed").count(), 1);
    // The task, and detection with the model it made.
    let task = find(&|v| v["kind"] == "train" && v.get("status").is_some()).expect("task printed");
    assert_eq!(task["status"], "completed", "{task}");
    let detection = find(&|v| v["algorithm"] == "iforest" && v.get("scores").is_some())
        .expect("model detection printed");
    assert_eq!(detection["model_id"], task["result"]);
    assert_eq!(detection["scores"].as_array().map(Vec::len), Some(5));
    // The stream's anomalies: the spike at point 1300 among them.
    let anomalies = find(&|v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|x| x.get("index").is_some()))
    })
    .expect("stream anomalies printed");
    assert!(
        anomalies
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["index"] == 1300)),
        "{anomalies}"
    );
}
