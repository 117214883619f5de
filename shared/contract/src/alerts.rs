//! The alert store's contract: rules per tenant, deliveries per rule newest first and
//! paged, counts added in place and kept by status writes, a rule's log deleted with it.

use crate::tenant;
use nomaly_core::domain::{
    AlertDelivery, AlertMatch, AlertRule, DeliveryStatus, Destination, EventType, Feedback,
    FeedbackLabel,
};
use nomaly_core::ids::{AlertId, DatasetId, FeedbackId, ModelId, StreamId};
use nomaly_core::ports::{AlertStore, FeedbackStore, PageRequest, StoreError};
use nomaly_core::time::Timestamp;

fn rule(tenant: &nomaly_core::domain::TenantId) -> AlertRule {
    AlertRule {
        id: AlertId::new(),
        tenant: tenant.clone(),
        name: "spikes".into(),
        matches: AlertMatch {
            events: vec![EventType::AnomalyDetected],
            stream_id: None,
            model_id: None,
            entity: None,
            min_score: Some(0.9),
        },
        destination: Destination::Webhook {
            url: "https://hooks.example.com/nomaly".into(),
        },
        secret: "whsec_test".into(),
        cooldown: 300,
        group_by: vec![],
        enabled: true,
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    }
}

fn delivery(rule: &AlertRule, count: u64) -> AlertDelivery {
    AlertDelivery {
        event_type: Some(EventType::AnomalyDetected),
        ..AlertDelivery::pending(
            rule,
            String::new(),
            count,
            serde_json::json!({"type": "anomaly.detected"}),
        )
    }
}

/// Rules and their delivery logs.
pub async fn alert_rules_and_deliveries(store: &dyn AlertStore) {
    let (a, b) = (tenant(), tenant());
    let r = rule(&a);
    store.put_rule(&r).await.expect("put a rule");
    let mut changed = r.clone();
    changed.name = "renamed".into();
    store.put_rule(&changed).await.expect("change a rule");
    let got = store
        .get_rule(&a, &r.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(got, changed, "a rule reads back as last written");
    assert!(
        store.get_rule(&b, &r.id).await.expect("get").is_none(),
        "another tenant does not see the rule"
    );
    let listed = store
        .list_rules(&a, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(listed.items, vec![changed.clone()]);
    assert!(store
        .list_rules(&b, &PageRequest::default())
        .await
        .expect("list")
        .items
        .is_empty());

    // Deliveries: newest first, paged, counts added in place.
    let mut made = Vec::new();
    for i in 0..5 {
        let d = delivery(&r, i + 1);
        store.create_delivery(&d).await.expect("create a delivery");
        made.push(d);
    }
    assert!(
        matches!(
            store.create_delivery(&made[0]).await,
            Err(StoreError::AlreadyExists(_))
        ),
        "a delivery id is taken once"
    );
    let first = store
        .list_deliveries(
            &a,
            &r.id,
            &PageRequest {
                limit: 3,
                token: None,
            },
        )
        .await
        .expect("list deliveries");
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.items[0].id, made[4].id, "newest first");
    let second = store
        .list_deliveries(
            &a,
            &r.id,
            &PageRequest {
                limit: 3,
                token: first.next_token.clone(),
            },
        )
        .await
        .expect("second page");
    let ids: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|d| d.id.clone())
        .collect();
    let mut want: Vec<_> = made.iter().rev().map(|d| d.id.clone()).collect();
    want.truncate(ids.len());
    assert_eq!(ids, want, "two pages hold every delivery once, in order");
    assert_eq!(ids.len(), 5);
    assert!(store
        .list_deliveries(&b, &r.id, &PageRequest::default())
        .await
        .expect("list")
        .items
        .is_empty());

    let d = &made[0];
    store.add_to_count(&a, &r.id, &d.id, 10).await.expect("add");
    store.add_to_count(&a, &r.id, &d.id, 5).await.expect("add");
    // A status write made from a copy read before the adds keeps them.
    let mut sent = d.clone();
    sent.status = DeliveryStatus::Delivered;
    sent.attempts = 1;
    sent.last_status = Some(200);
    store.update_delivery(&sent).await.expect("update");
    let got = store
        .get_delivery(&a, &r.id, &d.id)
        .await
        .expect("get")
        .expect("there");
    assert_eq!(got.count, 16, "1 + 10 + 5, kept through the status write");
    assert_eq!(got.status, DeliveryStatus::Delivered);
    assert_eq!(got.last_status, Some(200));
    assert!(store
        .get_delivery(&b, &r.id, &d.id)
        .await
        .expect("get")
        .is_none());
    assert!(
        matches!(
            store.add_to_count(&b, &r.id, &d.id, 1).await,
            Err(StoreError::NotFound(_))
        ),
        "another tenant cannot count into it"
    );
    let mut foreign = sent.clone();
    foreign.tenant = b.clone();
    assert!(
        matches!(
            store.update_delivery(&foreign).await,
            Err(StoreError::NotFound(_))
        ),
        "nor write it"
    );

    // Deleting the rule deletes its log.
    assert!(matches!(
        store.delete_rule(&b, &r.id).await,
        Err(StoreError::NotFound(_))
    ));
    store.delete_rule(&a, &r.id).await.expect("delete");
    assert!(store.get_rule(&a, &r.id).await.expect("get").is_none());
    assert!(store
        .list_deliveries(&a, &r.id, &PageRequest::default())
        .await
        .expect("list")
        .items
        .is_empty());
    assert!(matches!(
        store.delete_rule(&a, &r.id).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Verdicts: stored once, listed newest first, per tenant.
pub async fn feedback_is_kept_per_tenant(store: &dyn FeedbackStore) {
    let (a, b) = (tenant(), tenant());
    let verdict = |label| Feedback {
        id: FeedbackId::new(),
        tenant: a.clone(),
        stream_id: Some(StreamId::new()),
        entity: Some("web-1".into()),
        model_id: None,
        dataset_id: None,
        row: None,
        label,
        event_id: None,
        index: None,
        from: Some(1),
        to: Some(2),
        score: Some(0.9),
        threshold_before: Some(0.5),
        threshold_after: Some(0.95),
        effect: "raised".into(),
        note: None,
        created_at: Timestamp::now(),
    };
    let first = verdict(FeedbackLabel::FalsePositive);
    // a label on a dataset's row, with no threshold
    let second = Feedback {
        stream_id: None,
        entity: None,
        model_id: Some(ModelId::new()),
        dataset_id: Some(DatasetId::new()),
        row: Some(17),
        from: None,
        to: None,
        score: None,
        threshold_before: None,
        threshold_after: None,
        ..verdict(FeedbackLabel::Missed)
    };
    store.put_feedback(&first).await.expect("put");
    store.put_feedback(&second).await.expect("put");
    assert!(matches!(
        store.put_feedback(&first).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let listed = store
        .list_feedback(&a, &PageRequest::default())
        .await
        .expect("list");
    assert_eq!(listed.items, vec![second, first], "newest first");
    assert!(store
        .list_feedback(&b, &PageRequest::default())
        .await
        .expect("list")
        .items
        .is_empty());
}
