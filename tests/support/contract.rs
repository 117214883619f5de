//! The API contract, enforced on live answers: every answer the suite's HTTP client
//! receives from the API is checked against `docs/openapi.json` (the document the tests
//! in `nomaly-core` prove equal to the code's). An answer whose status, media type or
//! body the document does not allow fails the test that received it.

use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Paths the local server serves beside the API (its gateway's WebSocket, presigned
/// uploads and downloads, metrics, the management API and the dashboard): they are not
/// the HTTP API, and the document does not describe them.
const BESIDE_THE_API: &[&str] = &[
    "/ws",
    "/uploads/",
    "/downloads/",
    "/metrics",
    "/@connections/",
    "/dashboard",
];

/// The document, and the validators built from it so far.
pub struct Contract {
    doc: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    checked: AtomicUsize,
}

/// The contract of `docs/openapi.json`, read once.
pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let path = crate::repo_root().join("docs").join("openapi.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Contract::new(serde_json::from_str(&text).expect("docs/openapi.json is JSON"))
    })
}

impl Contract {
    /// A contract over an OpenAPI 3.1 document.
    pub fn new(doc: Value) -> Contract {
        Contract {
            doc,
            validators: Mutex::new(HashMap::new()),
            checked: AtomicUsize::new(0),
        }
    }

    /// Answers checked against a schema so far.
    pub fn checked(&self) -> usize {
        self.checked.load(Ordering::Relaxed)
    }

    /// The documented path template `path` (without its query) matches: the one with
    /// the most literal segments, as a router would choose.
    fn template(&self, path: &str) -> Option<String> {
        let want: Vec<&str> = path.split('/').collect();
        let paths = self.doc["paths"].as_object()?;
        paths
            .keys()
            .filter_map(|template| {
                let have: Vec<&str> = template.split('/').collect();
                if have.len() != want.len() {
                    return None;
                }
                let mut literal = 0;
                for (h, w) in have.iter().zip(&want) {
                    if h.starts_with('{') && h.ends_with('}') {
                        if w.is_empty() {
                            return None;
                        }
                    } else if h == w {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, template.clone()))
            })
            .max()
            .map(|(_, t)| t)
    }

    /// Checks one answer: `Err` says what the document does not allow.
    pub fn check(
        &self,
        method: &str,
        path_and_query: &str,
        status: u16,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), String> {
        let path = path_and_query.split('?').next().unwrap_or_default();
        if BESIDE_THE_API.iter().any(|p| path.starts_with(p)) {
            return Ok(());
        }
        let operation = self.template(path).and_then(|t| {
            let op = &self.doc["paths"][&t][method.to_lowercase()];
            (!op.is_null()).then(|| (t, op.clone()))
        });
        let (key, response) = match &operation {
            Some((template, op)) => {
                let responses = &op["responses"];
                let exact = status.to_string();
                let range = format!("{}XX", status / 100);
                let Some(code) = [exact.as_str(), range.as_str(), "default"]
                    .into_iter()
                    .find(|c| !responses[*c].is_null())
                else {
                    return Err(format!(
                        "{method} {template} answered {status}, which the document does not list"
                    ));
                };
                (
                    format!("{method} {template} {code}"),
                    responses[code].clone(),
                )
            }
            // No such route: the answer must be a problem (404 or 405).
            None if matches!(status, 404 | 405) => (
                "unrouted".to_string(),
                serde_json::json!({"content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemBody"}}}}),
            ),
            None => {
                return Err(format!(
                    "{method} {path} answered {status} but the document has no such operation"
                ))
            }
        };
        let Some(content) = response["content"].as_object() else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{key}: the document says no body, the answer has {} bytes",
                    body.len()
                ))
            };
        };
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(str::trim)
            .unwrap_or_default();
        let Some(media_doc) = content.get(media) else {
            return Err(format!(
                "{key}: answered as {media:?}; the document allows {:?}",
                content.keys().collect::<Vec<_>>()
            ));
        };
        let instance: Value = serde_json::from_slice(body)
            .map_err(|e| format!("{key}: the body is not JSON: {e}"))?;
        let validator = self.validator(&format!("{key} {media}"), &media_doc["schema"])?;
        let errors: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| format!("at {}: {e}", e.instance_path()))
            .collect();
        self.checked.fetch_add(1, Ordering::Relaxed);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{key}: the answer does not match the document's schema:\n  {}\nanswer: {}",
                errors.join("\n  "),
                String::from_utf8_lossy(&body[..body.len().min(2000)])
            ))
        }
    }

    /// The validator of `schema`, within the document (so `#/components/...` resolves).
    fn validator(&self, key: &str, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let mut cache = self.validators.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cache.get(key) {
            return Ok(v.clone());
        }
        let mut root = schema.clone();
        let Some(object) = root.as_object_mut() else {
            return Err(format!("{key}: the schema is not an object"));
        };
        object.insert("components".into(), self.doc["components"].clone());
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .map_err(|e| format!("{key}: the document's schema does not compile: {e}"))?;
        let validator = Arc::new(validator);
        cache.insert(key.to_string(), validator.clone());
        Ok(validator)
    }
}

/// The WebSocket API's contract: every message a client receives is one of the messages
/// `docs/asyncapi.json` says the service sends.
pub struct SocketContract {
    validator: jsonschema::Validator,
    checked: AtomicUsize,
}

/// The contract of `docs/asyncapi.json`, read once.
pub fn socket_contract() -> &'static SocketContract {
    static CONTRACT: OnceLock<SocketContract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let path = crate::repo_root().join("docs").join("asyncapi.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        SocketContract::new(&serde_json::from_str(&text).expect("docs/asyncapi.json is JSON"))
    })
}

impl SocketContract {
    /// The contract of an AsyncAPI 3 document: the messages of its `send` operations.
    pub fn new(doc: &Value) -> SocketContract {
        let mut sent = Vec::new();
        for op in doc["operations"].as_object().expect("operations").values() {
            if op["action"] != "send" {
                continue;
            }
            for m in op["messages"].as_array().expect("an operation's messages") {
                let name = m["$ref"]
                    .as_str()
                    .and_then(|r| r.rsplit('/').next())
                    .expect("a message reference");
                let schema = doc["components"]["messages"][name]["payload"]["schema"].clone();
                assert!(!schema.is_null(), "message {name} has no payload schema");
                sent.push(schema);
            }
        }
        assert!(!sent.is_empty(), "the document sends no messages");
        let root = serde_json::json!({"anyOf": sent, "components": doc["components"]});
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&root)
            .expect("the document's schemas compile");
        SocketContract {
            validator,
            checked: AtomicUsize::new(0),
        }
    }

    /// Messages checked so far.
    pub fn checked(&self) -> usize {
        self.checked.load(Ordering::Relaxed)
    }

    /// Checks one received message.
    pub fn check(&self, message: &Value) -> Result<(), String> {
        self.checked.fetch_add(1, Ordering::Relaxed);
        if self.validator.is_valid(message) {
            Ok(())
        } else {
            Err(format!(
                "the service sent a message docs/asyncapi.json does not describe: {message}"
            ))
        }
    }
}
