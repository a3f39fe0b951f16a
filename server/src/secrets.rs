//! Repository secrets: written through the API, kept encrypted (AES-256-GCM
//! under a key derived from `GANTRY_SECRET_KEY`), handed to a job as env vars
//! — never to a pull request from a fork — and never shown again.

use crate::store::now_ms;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use gantry_protocol::RepoId;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

/// The cipher for secrets.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox { .. }")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "secret {0} cannot be decrypted: GANTRY_SECRET_KEY is not the key it was written with"
    )]
    WrongKey(String),
    #[error("the stored form of secret {0} is damaged")]
    Damaged(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

fn aad(repo: RepoId, name: &str) -> Vec<u8> {
    format!("gantry-secret:{repo}:{name}").into_bytes()
}

impl SecretBox {
    /// A key from `GANTRY_SECRET_KEY` (any long random string: it is hashed to 256 bits).
    pub fn new(key: &str) -> SecretBox {
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        SecretBox {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&digest)),
        }
    }

    pub fn seal(&self, repo: RepoId, name: &str, value: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let aad = aad(repo, name);
        // Encryption with a valid key and nonce cannot fail.
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend(sealed);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    pub fn open(&self, repo: RepoId, name: &str, sealed: &str) -> Result<String, SecretError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| SecretError::Damaged(name.into()))?;
        if bytes.len() < 12 {
            return Err(SecretError::Damaged(name.into()));
        }
        let (nonce, ciphertext) = bytes.split_at(12);
        let aad = aad(repo, name);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::WrongKey(name.into()))?;
        String::from_utf8(plain).map_err(|_| SecretError::Damaged(name.into()))
    }
}

/// A secret as listed: no value.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SecretInfo {
    pub name: String,
    pub branches: Vec<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

pub async fn put(
    conn: &mut AnyConnection,
    sealer: &SecretBox,
    repo: RepoId,
    name: &str,
    value: &str,
    branches: &[String],
) -> Result<bool, sqlx::Error> {
    let now = now_ms();
    let sealed = sealer.seal(repo, name, value);
    let branches = serde_json::to_string(branches).unwrap_or_else(|_| "[]".into());
    let existed: Option<i64> =
        sqlx::query_scalar("SELECT id FROM secrets WHERE repo_id = $1 AND name = $2")
            .bind(repo.0)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT INTO secrets (repo_id, name, sealed, branches, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (repo_id, name) DO UPDATE SET sealed = excluded.sealed, branches = excluded.branches, updated_at = excluded.updated_at",
    )
    .bind(repo.0)
    .bind(name)
    .bind(sealed)
    .bind(branches)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(existed.is_none())
}

pub async fn delete(
    conn: &mut AnyConnection,
    repo: RepoId,
    name: &str,
) -> Result<bool, sqlx::Error> {
    let result = sqlx::query("DELETE FROM secrets WHERE repo_id = $1 AND name = $2")
        .bind(repo.0)
        .bind(name)
        .execute(conn)
        .await?;
    Ok(result.rows_affected() > 0)
}

pub async fn list(conn: &mut AnyConnection, repo: RepoId) -> Result<Vec<SecretInfo>, sqlx::Error> {
    let rows = sqlx::query("SELECT name, branches, created_at, updated_at FROM secrets WHERE repo_id = $1 ORDER BY name").bind(repo.0).fetch_all(conn).await?;
    rows.iter()
        .map(|r| {
            let branches: String = r.try_get(1)?;
            Ok(SecretInfo {
                name: r.try_get(0)?,
                branches: serde_json::from_str(&branches).unwrap_or_default(),
                created_at: crate::api::views::time(r.try_get(2)?),
                updated_at: crate::api::views::time(r.try_get(3)?),
            })
        })
        .collect()
}

/// The secrets a build of `branch` gets, decrypted.
pub async fn for_build(
    conn: &mut AnyConnection,
    sealer: &SecretBox,
    repo: RepoId,
    branch: &str,
) -> Result<Vec<(String, String)>, SecretError> {
    let rows =
        sqlx::query("SELECT name, sealed, branches FROM secrets WHERE repo_id = $1 ORDER BY name")
            .bind(repo.0)
            .fetch_all(conn)
            .await?;
    let mut out = Vec::new();
    for r in rows {
        let name: String = r.try_get(0)?;
        let branches: Vec<String> =
            serde_json::from_str(&r.try_get::<String, _>(2)?).unwrap_or_default();
        if !branches.is_empty() && !branches.iter().any(|b| b == branch) {
            continue;
        }
        let value = sealer.open(repo, &name, &r.try_get::<String, _>(1)?)?;
        out.push((name, value));
    }
    Ok(out)
}

/// The values of every secret of `repo` (whatever their branches), for
/// hiding them in what the server shows; none without a key.
pub async fn values(
    conn: &mut AnyConnection,
    sealer: Option<&SecretBox>,
    repo: RepoId,
) -> Result<Vec<String>, SecretError> {
    let Some(sealer) = sealer else {
        return Ok(Vec::new());
    };
    let rows = sqlx::query("SELECT name, sealed FROM secrets WHERE repo_id = $1")
        .bind(repo.0)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            sealer.open(
                repo,
                &r.try_get::<String, _>(0)?,
                &r.try_get::<String, _>(1)?,
            )
        })
        .collect()
}

/// `text` with each of `values` replaced by `[secure]`. A value of three
/// characters or fewer is in every text and is left alone.
pub fn mask(text: &str, values: &[String]) -> String {
    let mut out = text.to_string();
    for value in values.iter().filter(|v| v.len() > 3) {
        out = out.replace(value.as_str(), "[secure]");
    }
    out
}

/// Checks at start-up that the key opens the stored secrets (or that there is a key at all).
pub async fn check_key(conn: &mut AnyConnection, sealer: Option<&SecretBox>) -> Result<(), String> {
    let row = sqlx::query("SELECT repo_id, name, sealed FROM secrets ORDER BY id LIMIT 1")
        .fetch_optional(conn)
        .await
        .map_err(|e| e.to_string())?;
    let Some(row) = row else { return Ok(()) };
    let Some(sealer) = sealer else {
        return Err("the database holds secrets but GANTRY_SECRET_KEY is not set: set it to the key they were written with".into());
    };
    let (repo, name, sealed): (i64, String, String) = (
        row.try_get(0).map_err(|e| e.to_string())?,
        row.try_get(1).map_err(|e| e.to_string())?,
        row.try_get(2).map_err(|e| e.to_string())?,
    );
    sealer
        .open(RepoId(repo), &name, &sealed)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_hides_every_occurrence_but_not_values_too_short_to_tell() {
        let values = vec!["s3cr3t".to_string(), "abc".to_string()];
        assert_eq!(
            mask("A=s3cr3t B=s3cr3t C=abc", &values),
            "A=[secure] B=[secure] C=abc"
        );
    }

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let key = SecretBox::new("a-long-random-key-for-tests-0123456789");
        let sealed = key.seal(RepoId(1), "TOKEN", "hunter22");
        assert!(!sealed.contains("hunter22"));
        assert_eq!(key.open(RepoId(1), "TOKEN", &sealed).unwrap(), "hunter22");
        assert!(matches!(
            SecretBox::new("another key").open(RepoId(1), "TOKEN", &sealed),
            Err(SecretError::WrongKey(_))
        ));
        assert!(
            key.open(RepoId(2), "TOKEN", &sealed).is_err(),
            "bound to its repository"
        );
        assert!(
            key.open(RepoId(1), "OTHER", &sealed).is_err(),
            "and to its name"
        );
        assert_ne!(
            key.seal(RepoId(1), "TOKEN", "hunter22"),
            sealed,
            "a fresh nonce each time"
        );
    }
}
