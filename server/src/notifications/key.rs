//! The key webhook notifications are signed with, as Travis signs them:
//! RSA PKCS#1 v1.5 over SHA-1 of the `payload`, base64 in a `Signature`
//! header. Receivers check it against the public half, which `/api/config`
//! serves where Travis's API serves its own (`config.notifications.webhook.public_key`).
//!
//! Made on first use and kept in the database, so every server of a
//! PostgreSQL deployment signs with the same key and a restart keeps it.

use crate::store::{now_ms, Db};
use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use sha1::Sha1;
use std::sync::Arc;
use tokio::sync::OnceCell;

const NAME: &str = "webhook-notifications";
const BITS: usize = 2048;

/// The signing key, loaded or made once per process.
#[derive(Clone, Default)]
pub struct NotificationKey {
    key: Arc<OnceCell<Arc<RsaPrivateKey>>>,
}

impl std::fmt::Debug for NotificationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NotificationKey { .. }")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Db(#[from] sqlx::Error),
    #[error("the stored webhook signing key cannot be read: {0}")]
    Damaged(String),
    #[error("cannot make a webhook signing key: {0}")]
    Make(String),
}

impl NotificationKey {
    async fn get(&self, db: &Db) -> Result<Arc<RsaPrivateKey>, KeyError> {
        self.key
            .get_or_try_init(|| async { load_or_make(db).await.map(Arc::new) })
            .await
            .cloned()
    }

    /// `Signature`'s value for `payload`.
    pub async fn sign(&self, db: &Db, payload: &[u8]) -> Result<String, KeyError> {
        let key = self.get(db).await?;
        let payload = payload.to_vec();
        let signature = tokio::task::spawn_blocking(move || {
            SigningKey::<Sha1>::new((*key).clone())
                .sign(&payload)
                .to_vec()
        })
        .await
        .map_err(|e| KeyError::Make(e.to_string()))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(signature))
    }

    /// The public half, PEM (`-----BEGIN PUBLIC KEY-----`).
    pub async fn public_pem(&self, db: &Db) -> Result<String, KeyError> {
        let key = self.get(db).await?;
        key.to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Damaged(e.to_string()))
    }
}

async fn stored(db: &Db) -> Result<Option<RsaPrivateKey>, KeyError> {
    let pem: Option<String> =
        sqlx::query_scalar("SELECT private_pem FROM signing_keys WHERE name = $1")
            .bind(NAME)
            .fetch_optional(&db.pool)
            .await?;
    pem.map(|pem| RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Damaged(e.to_string())))
        .transpose()
}

async fn load_or_make(db: &Db) -> Result<RsaPrivateKey, KeyError> {
    if let Some(key) = stored(db).await? {
        return Ok(key);
    }
    // Making a key takes a fraction of a second of one core.
    let pem = tokio::task::spawn_blocking(|| {
        let key = RsaPrivateKey::new(&mut rand::rngs::OsRng, BITS)
            .map_err(|e| KeyError::Make(e.to_string()))?;
        key.to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| KeyError::Make(e.to_string()))
    })
    .await
    .map_err(|e| KeyError::Make(e.to_string()))??;
    // Another server may have made one meanwhile: the first stored wins.
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO signing_keys (name, private_pem, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(NAME)
    .bind(pem)
    .bind(now_ms())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    stored(db)
        .await?
        .ok_or_else(|| KeyError::Damaged("it was stored and is gone".into()))
}
