//! `nomaly keys`: make, list and revoke API keys, on the embedded store (a data folder)
//! or, with `--aws`, in a deployed stack's state table. A key is printed once; only its
//! hash is stored.

use anyhow::{bail, Context, Result};
use nomaly_core::domain::{ApiKey, TenantId};
use nomaly_core::ids::KeyId;
use nomaly_core::ports::KeyStore;
use std::path::PathBuf;

/// Where the keys are.
#[derive(clap::Args)]
pub struct Store {
    /// The embedded data folder (as `nomaly serve --data-dir`).
    #[arg(long, default_value = ".nomaly", conflicts_with = "aws")]
    data_dir: PathBuf,
    /// Use the deployed stack's state table instead: `--table`, or `NOMALY_TABLE`, with
    /// the usual AWS credentials and region (and `AWS_ENDPOINT_URL` for an emulator).
    #[arg(long)]
    aws: bool,
    /// The state table (the stack's `StateTableName` output) when `--aws`.
    #[arg(long, env = "NOMALY_TABLE", requires = "aws")]
    table: Option<String>,
}

/// `nomaly keys ...`
#[derive(clap::Subcommand)]
pub enum Command {
    /// Make a key for a tenant and print it (shown only this once).
    Create {
        /// Tenant: 1-64 characters of a-z, 0-9, '-' and '_'.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: Store,
    },
    /// List a tenant's keys (ids and dates, never secrets).
    List {
        /// Tenant.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: Store,
    },
    /// Revoke a key: it stops working at once.
    Revoke {
        /// Tenant.
        #[arg(long)]
        tenant: String,
        /// The key's id (`key_...`, the part after `nmk_` up to the next `_`).
        #[arg(long)]
        id: String,
        #[command(flatten)]
        store: Store,
    },
}

async fn open(store: &Store) -> Result<Box<dyn KeyStore>> {
    if store.aws {
        return open_aws(store).await;
    }
    let db = nomaly_embedded::Database::open(&store.data_dir)
        .with_context(|| format!("opening the data folder {}", store.data_dir.display()))?;
    Ok(Box::new(nomaly_embedded::SqliteStore::new(db)))
}

/// The deployed stack's state table.
#[cfg(feature = "aws")]
async fn open_aws(store: &Store) -> Result<Box<dyn KeyStore>> {
    let Some(table) = &store.table else {
        bail!("--aws needs the state table: --table NAME or NOMALY_TABLE");
    };
    let path_style = std::env::var("AWS_ENDPOINT_URL").is_ok();
    let clients = nomaly_aws::Clients::from_env(path_style).await;
    // Keys live in the state table only; the events table is not touched.
    Ok(Box::new(nomaly_aws::DynamoStore::new(
        clients.dynamodb,
        table,
        "",
    )))
}

#[cfg(not(feature = "aws"))]
async fn open_aws(_store: &Store) -> Result<Box<dyn KeyStore>> {
    bail!(crate::WITHOUT_AWS)
}

fn tenant(name: &str) -> Result<TenantId> {
    TenantId::parse(name).with_context(|| format!("tenant `{name}`"))
}

pub fn run(command: Command) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match command {
            Command::Create { tenant: t, store } => {
                let issued = ApiKey::issue(tenant(&t)?);
                open(&store)
                    .await?
                    .put_key(&issued.record)
                    .await
                    .context("storing the key")?;
                println!("{}", issued.plaintext);
                eprintln!(
                    "key {} for tenant {t}: store it now, it is not shown again",
                    issued.record.id
                );
            }
            Command::List { tenant: t, store } => {
                let keys = open(&store)
                    .await?
                    .list_keys(&tenant(&t)?)
                    .await
                    .context("listing keys")?;
                println!("id,created_at,revoked_at");
                for k in keys {
                    println!(
                        "{},{},{}",
                        k.id,
                        k.created_at.rfc3339(),
                        k.revoked_at.map(|r| r.rfc3339()).unwrap_or_default()
                    );
                }
            }
            Command::Revoke {
                tenant: t,
                id,
                store,
            } => {
                let id = KeyId::parse(&id)
                    .with_context(|| format!("`{id}` is not a key id (key_...)"))?;
                open(&store)
                    .await?
                    .revoke_key(&tenant(&t)?, &id)
                    .await
                    .with_context(|| format!("revoking {id}"))?;
                eprintln!("revoked {id}");
            }
        }
        Ok(())
    })
}
