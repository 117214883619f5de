//! A WebSocket message: reading its action, doing it (subscribe, unsubscribe, score on a
//! model or a stream, ping), and replying on the connection.

use super::replay::replay;
use crate::bounded::Exceeded;
use crate::domain::Channel;
use crate::ids::{EventId, ModelId, StreamId};
use crate::limits::{self, MAX_SUBSCRIPTIONS_PER_CONNECTION, WS_MAX_SCORE_ROWS};
use crate::service::connections::close;
use crate::service::detection::score_with;
use crate::service::input::Rows;
use crate::service::streams::{self, PointIn};
use crate::service::uses::HandlesMessages;
use crate::service::{cost, models, Problem};
use crate::time::Timestamp;
use serde::Deserialize;

/// An incoming message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Listen to a channel.
    Subscribe {
        /// `task:<id>`, `model:<id>` or `tenant`.
        channel: String,
        /// Replay stored events after this one first.
        #[serde(default)]
        after: Option<String>,
    },
    /// Stop listening.
    Unsubscribe {
        /// The channel.
        channel: String,
    },
    /// Score rows on a model, or append points to a stream.
    Score {
        /// The model (with `rows`).
        #[serde(default)]
        model_id: Option<String>,
        /// The rows.
        #[serde(default)]
        rows: Option<Vec<Vec<f64>>>,
        /// The rows' column names (matched to the model's features by name); without
        /// them the rows are taken in the model's order.
        #[serde(default)]
        columns: Option<Vec<String>>,
        /// The stream (with `points`).
        #[serde(default)]
        stream_id: Option<String>,
        /// The points.
        #[serde(default)]
        points: Option<Vec<PointIn>>,
        /// Echoed in the reply.
        #[serde(default)]
        request_id: Option<String>,
    },
    /// Liveness.
    Ping {},
}

fn reply(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap_or_default()
}

/// The error message for a problem.
pub fn error_message(problem: &Problem) -> Vec<u8> {
    reply(serde_json::json!({"type": "error", "error": problem.body()}))
}

/// Handles one message from `connection_id`; replies and replayed events are pushed to
/// the connection through the notifier. A message that cannot be handled gets an
/// `error` reply; the connection stays open, unless its key has been revoked: then the
/// reply says so and the connection is closed.
pub async fn message_received(services: &impl HandlesMessages, connection_id: &str, body: &[u8]) {
    crate::metrics::global().add(crate::metrics::Counter::WebSocketMessages, 1);
    let outcome = handle(services, connection_id, body).await;
    let revoked = matches!(&outcome, Err(p) if p.slug == "unauthorized");
    let out = match outcome {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(p) => error_message(&p),
    };
    if let Err(e) = services.notifier().push(connection_id, &out).await {
        tracing::warn!(connection = connection_id, error = %e, "reply not delivered");
    }
    if revoked {
        close(services, connection_id).await;
    }
}

async fn handle(
    services: &impl HandlesMessages,
    connection_id: &str,
    body: &[u8],
) -> Result<Option<Vec<u8>>, Problem> {
    let mut connection = services
        .connections()
        .get_connection(connection_id)
        .await?
        .ok_or_else(|| Problem::unauthorized("this connection is not registered; reconnect"))?;
    if !services.keys().connection_key_live(&connection).await? {
        return Err(Problem::unauthorized(
            "the API key of this connection was revoked; reconnect with a valid key",
        ));
    }
    crate::service::rate_limit::admit(services, &connection.tenant).await?;
    let action: Action = serde_json::from_slice(body).map_err(|e| {
        Problem::malformed_request(format!(
            "messages are JSON objects with an `action` of subscribe, unsubscribe, score or ping: {e}"
        ))
    })?;
    match action {
        Action::Ping {} => Ok(Some(reply(serde_json::json!({"type": "pong"})))),
        Action::Subscribe { channel, after } => {
            let channel =
                Channel::parse(&channel).map_err(|e| Problem::invalid_parameter(e.to_string()))?;
            let after = after
                .map(|a| {
                    EventId::parse(&a).map_err(|_| {
                        Problem::invalid_parameter("`after` must be an event id (evt_...)")
                    })
                })
                .transpose()?;
            if !connection.subscriptions.contains(&channel) {
                if connection.subscriptions.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
                    return Err(Exceeded {
                        limit: limits::SUBSCRIPTIONS_PER_CONNECTION.name,
                        detail: format!(
                            "this connection listens to {} channels, the most one may; unsubscribe from one first, or subscribe to `tenant`",
                            connection.subscriptions.len()
                        ),
                    }
                    .into());
                }
                connection.subscriptions.push(channel.clone());
            }
            connection.expires_at =
                Timestamp::now().plus_seconds(i64::from(services.settings().connection_ttl_secs));
            services.connections().put_connection(&connection).await?;
            let replayed = match after {
                Some(after) => {
                    replay(services, connection_id, &connection.tenant, &channel, after).await?
                }
                None => 0,
            };
            Ok(Some(reply(
                serde_json::json!({"type": "subscribed", "channel": channel, "replayed": replayed}),
            )))
        }
        Action::Unsubscribe { channel } => {
            let channel =
                Channel::parse(&channel).map_err(|e| Problem::invalid_parameter(e.to_string()))?;
            connection.subscriptions.retain(|c| *c != channel);
            services.connections().put_connection(&connection).await?;
            Ok(Some(reply(
                serde_json::json!({"type": "unsubscribed", "channel": channel}),
            )))
        }
        Action::Score {
            model_id: None,
            rows: None,
            columns: None,
            stream_id: Some(stream_id),
            points: Some(points),
            request_id,
        } => {
            let stream_id = StreamId::parse(&stream_id).map_err(|_| {
                Problem::invalid_parameter("`stream_id` must be a stream id (stm_...)")
            })?;
            if points.len() > WS_MAX_SCORE_ROWS {
                return Err(Problem::too_large(format!(
                    "a score message takes at most {WS_MAX_SCORE_ROWS} points; use POST /v1/streams/{{id}}/points for more"
                )));
            }
            let points = streams::points_from_json(points)?;
            let correlation = format!("ws_{}", crate::ids::Ulid::new().encode());
            let appended = streams::append(
                services,
                &connection.tenant,
                &correlation,
                &stream_id,
                points,
            )
            .await?;
            let mut body =
                serde_json::to_value(&appended).map_err(|e| Problem::internal(e.to_string()))?;
            body["type"] = serde_json::json!("scores");
            body["request_id"] = serde_json::json!(request_id);
            Ok(Some(reply(body)))
        }
        Action::Score {
            model_id: Some(model_id),
            rows: Some(rows),
            columns,
            stream_id: None,
            points: None,
            request_id,
        } => {
            let model_id = ModelId::parse(&model_id).map_err(|_| {
                Problem::invalid_parameter("`model_id` must be a model id (mdl_...)")
            })?;
            if rows.len() > WS_MAX_SCORE_ROWS {
                return Err(Problem::too_large(format!(
                    "a score message takes at most {WS_MAX_SCORE_ROWS} rows; use POST /v1/detect for more"
                )));
            }
            let rows = Rows::new(rows, columns)?;
            let (_, model) = models::load(services, &connection.tenant, &model_id).await?;
            let (rows, ignored) = rows.for_model(model.feature_names())?;
            let predicted = cost::predict_ms(
                model.algorithm(),
                false,
                rows.len(),
                rows.columns.len(),
                model.training().rows,
            );
            if predicted > services.settings().detect_budget_ms as f64 {
                // A socket has no 202: costly scoring belongs to POST /v1/detect.
                return Err(Exceeded {
                    limit: limits::DETECT_BUDGET.name,
                    detail: format!(
                        "this score is predicted to take {predicted:.0} ms, past the budget of {} ms; use POST /v1/detect, which queues costly work",
                        services.settings().detect_budget_ms
                    ),
                }
                .into());
            }
            let id = model_id.clone();
            let detection = tokio::task::spawn_blocking(move || {
                score_with(&model, Some(id), &rows, false, None, &|_| {})
            })
            .await
            .map_err(|e| Problem::internal(e.to_string()))??;
            Ok(Some(reply(serde_json::json!({
                "type": "scores",
                "request_id": request_id,
                "model_id": model_id,
                "scores": detection.scores,
                "labels": detection.labels,
                "threshold": detection.threshold,
                "anomalies": detection.anomalies,
                "ignored_columns": ignored,
            }))))
        }
        Action::Score { .. } => Err(Problem::invalid_parameter(
            "`score` takes either `model_id` and `rows`, or `stream_id` and `points`",
        )),
    }
}
