//! `nomaly keys`: a key made by the command opens the API (it authenticates through the
//! same use case the router calls), is listed without its secret, and stops working once
//! revoked; on the embedded store and, with `--aws`, in a state table on moto server.

use nomaly_core::domain::{ApiKey, TenantId};
use nomaly_core::ports::KeyStore;
use nomaly_tests::aws::MotoStack;
use nomaly_tests::{binary, scratch};
use std::process::{Command, Output};

fn keys(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary("nomaly"))
        .arg("keys")
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("nomaly runs")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

async fn check(
    store: &dyn KeyStore,
    tenant: &str,
    create: &[&str],
    env: &[(&str, &str)],
    extra: &[&str],
) {
    let mut args = create.to_vec();
    args.extend_from_slice(extra);
    let key = ok(keys(&args, env)).trim().to_string();
    let (id, secret) = ApiKey::split(&key).expect("a key's shape");
    let record = store.get_key(&id).await.expect("read").expect("stored");
    assert_eq!(record.tenant, TenantId::parse(tenant).expect("tenant"));
    assert!(record.accepts(secret), "the printed key verifies");
    assert!(!record.secret_sha256.contains(secret), "stored hashed");
    let mut list = vec!["list", "--tenant", tenant];
    list.extend_from_slice(extra);
    let listed = ok(keys(&list, env));
    assert!(
        listed.contains(id.as_str()) && !listed.contains(secret),
        "{listed}"
    );
    let id_text = id.to_string();
    let mut revoke = vec!["revoke", "--tenant", tenant, "--id", id_text.as_str()];
    revoke.extend_from_slice(extra);
    ok(keys(&revoke, env));
    let record = store.get_key(&id).await.expect("read").expect("stored");
    assert!(!record.accepts(secret), "revoked at once");
    let mut wrong = vec![
        "revoke",
        "--tenant",
        "someone-else",
        "--id",
        id_text.as_str(),
    ];
    wrong.extend_from_slice(extra);
    assert!(
        !keys(&wrong, env).status.success(),
        "another tenant's key cannot be revoked"
    );
}

#[tokio::test]
async fn keys_on_the_embedded_store() {
    let dir = scratch("keys-embedded");
    let dir_text = dir.to_string_lossy().into_owned();
    let extra = ["--data-dir", dir_text.as_str()];
    {
        let store =
            nomaly_embedded::SqliteStore::new(nomaly_embedded::Database::open(&dir).expect("open"));
        check(&store, "acme", &["create", "--tenant", "acme"], &[], &extra).await;
    }
    let bad = keys(
        &[
            "create",
            "--tenant",
            "Not/A/Tenant",
            "--data-dir",
            &dir_text,
        ],
        &[],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("tenant"),
        "a clear error"
    );
}

#[tokio::test]
async fn keys_in_a_state_table_with_aws() {
    let MotoStack { clients, names, .. } = MotoStack::provision("nm-keys").await;
    let store =
        nomaly_aws::DynamoStore::new(clients.dynamodb.clone(), &names.table, &names.events_table);
    check(
        &store,
        "globex",
        &["create", "--tenant", "globex"],
        &[("NOMALY_TABLE", names.table.as_str())],
        &["--aws"],
    )
    .await;
}
