//! Where rotated Salesforce refresh tokens are kept (see `sfsync_salesforce::RotatedRefreshToken`):
//! the extract function's own Secrets Manager secret in AWS, a file in the state directory
//! readable only by its owner locally. Nothing here ever logs or returns a token in an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};
use sfsync_salesforce::{RefreshTokenStore, RotatedRefreshToken, StoreFuture, supersedes};

/// Why a rotated refresh token could not be read or stored. No variant holds a token or any
/// other content of the secret or the file: where the parse error of the content could quote
/// it (serde_json names an unexpected string by its value), only where it was is kept.
#[derive(Debug, thiserror::Error)]
pub enum TokenStoreError {
    /// Secrets Manager's `GetSecretValue` failed.
    #[error(
        "cannot read secret {secret_id}: {}",
        aws_sdk_secretsmanager::error::DisplayErrorContext(source.as_ref())
    )]
    SecretRead {
        secret_id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The secret is not a JSON object, so it has no keys to keep the token beside.
    #[error("secret {secret_id} is not a JSON object; cannot keep a rotated refresh token in it")]
    SecretNotObject { secret_id: String },
    /// The key is a string, but not a stored-token document.
    #[error(
        "secret {secret_id} key {REFRESH_TOKEN_SECRET_KEY} is not a stored refresh token (expected {{\"token\",\"generation\",\"origin\"}})"
    )]
    SecretKeyNotToken { secret_id: String },
    /// The key holds a JSON value other than a string.
    #[error("secret {secret_id} key {REFRESH_TOKEN_SECRET_KEY} must be a string")]
    SecretKeyNotString { secret_id: String },
    /// Secrets Manager's `PutSecretValue` failed.
    #[error(
        "cannot store the rotated refresh token (generation {generation}) in secret {secret_id}: {}",
        aws_sdk_secretsmanager::error::DisplayErrorContext(source.as_ref())
    )]
    SecretWrite {
        generation: u64,
        secret_id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The token record could not be serialised (a serialisation error names no value).
    #[error("cannot encode the refresh token record: {0}")]
    Encode(#[source] serde_json::Error),
    /// The file exists but is not a stored-token document.
    #[error(
        "{} is not a stored refresh token (expected {{\"token\",\"generation\",\"origin\"}})",
        path.display()
    )]
    FileNotToken { path: PathBuf },
    #[error("cannot read {}: {source}", path.display())]
    FileRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    FileWrite {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The key of the function's secret that holds the newest rotated refresh token (a JSON
/// document `{"token","generation","origin"}` as a string, like every value of the secret).
pub const REFRESH_TOKEN_SECRET_KEY: &str = "sfsync_refresh_token";

/// The rotated refresh token under [`REFRESH_TOKEN_SECRET_KEY`] of a Secrets Manager secret.
///
/// Secrets Manager has no conditional put, so ordering comes from the token chain itself
/// plus two checks. Generation N+1 can only be obtained by presenting generation N, which
/// another function learns only by reading this secret after N was written; so writes of
/// one chain arrive in generation order except for a writer that read the secret, then got
/// overtaken. That writer is caught by (1) compare-before-put: it re-reads the secret
/// immediately before writing and leaves a newer stored generation alone, and (2) the
/// version's `ClientRequestToken` is derived from the chain and generation, so a second,
/// different write of one generation fails (`ResourceExistsException`) instead of silently
/// replacing the first. The write keeps every other key of the secret as read.
#[derive(Debug, Clone)]
pub struct SecretTokenStore {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
}

impl SecretTokenStore {
    pub fn new(client: aws_sdk_secretsmanager::Client, secret_id: impl Into<String>) -> Self {
        SecretTokenStore {
            client,
            secret_id: secret_id.into(),
        }
    }

    /// The secret's keys and the stored token.
    async fn read(
        &self,
    ) -> Result<(Map<String, Value>, Option<RotatedRefreshToken>), TokenStoreError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| TokenStoreError::SecretRead {
                secret_id: self.secret_id.clone(),
                source: e.into(),
            })?;
        let text = out.secret_string().unwrap_or("{}");
        // The parse errors are dropped: they could quote the secret.
        let keys: Map<String, Value> =
            serde_json::from_str(text).map_err(|_| TokenStoreError::SecretNotObject {
                secret_id: self.secret_id.clone(),
            })?;
        let stored =
            match keys.get(REFRESH_TOKEN_SECRET_KEY) {
                None | Some(Value::Null) => None,
                Some(Value::String(doc)) => Some(serde_json::from_str(doc).map_err(|_| {
                    TokenStoreError::SecretKeyNotToken {
                        secret_id: self.secret_id.clone(),
                    }
                })?),
                Some(_) => {
                    return Err(TokenStoreError::SecretKeyNotString {
                        secret_id: self.secret_id.clone(),
                    });
                }
            };
        Ok((keys, stored))
    }
}

impl RefreshTokenStore for SecretTokenStore {
    fn load(&self) -> StoreFuture<'_, Option<RotatedRefreshToken>> {
        Box::pin(async move {
            let (_, stored) = self.read().await?;
            Ok(stored)
        })
    }

    fn save<'a>(&'a self, token: &'a RotatedRefreshToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (mut keys, stored) = self.read().await?;
            if !supersedes(token, stored.as_ref()) {
                tracing::info!(
                    generation = token.generation,
                    "a newer refresh token is already stored; leaving it"
                );
                return Ok(());
            }
            let doc = serde_json::to_string(token).map_err(TokenStoreError::Encode)?;
            keys.insert(REFRESH_TOKEN_SECRET_KEY.to_string(), Value::String(doc));
            let text = Value::Object(keys).to_string();
            // 32..64 characters; the same for the same chain and generation.
            let request_token = format!("sfsync-rt-{}-{:020}", token.origin, token.generation);
            self.client
                .put_secret_value()
                .secret_id(&self.secret_id)
                .secret_string(text)
                .client_request_token(request_token)
                .send()
                .await
                .map_err(|e| TokenStoreError::SecretWrite {
                    generation: token.generation,
                    secret_id: self.secret_id.clone(),
                    source: e.into(),
                })?;
            tracing::info!(
                generation = token.generation,
                secret = %self.secret_id,
                "rotated refresh token stored"
            );
            Ok(())
        })
    }
}

/// The rotated refresh token in `<state dir>/secrets/refresh_token.json`, mode 0600 in a
/// directory of mode 0700, written atomically (temporary file of mode 0600, then rename).
#[derive(Debug, Clone)]
pub struct FileTokenStore {
    path: PathBuf,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl FileTokenStore {
    pub fn new(state_dir: &Path) -> FileTokenStore {
        FileTokenStore {
            path: state_dir.join("secrets").join("refresh_token.json"),
            lock: Default::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> Result<Option<RotatedRefreshToken>, TokenStoreError> {
        match std::fs::read(&self.path) {
            // The parse error is dropped: it could quote the token.
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|_| {
                TokenStoreError::FileNotToken {
                    path: self.path.clone(),
                }
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(TokenStoreError::FileRead {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn write(&self, token: &RotatedRefreshToken) -> Result<(), TokenStoreError> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let io = |source: std::io::Error| TokenStoreError::FileWrite {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let bytes = serde_json::to_vec(token).map_err(TokenStoreError::Encode)?;
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

impl RefreshTokenStore for FileTokenStore {
    fn load(&self) -> StoreFuture<'_, Option<RotatedRefreshToken>> {
        Box::pin(async move { Ok(self.read()?) })
    }

    fn save<'a>(&'a self, token: &'a RotatedRefreshToken) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let _guard = self.lock.lock().await;
            if !supersedes(token, self.read()?.as_ref()) {
                return Ok(());
            }
            Ok(self.write(token)?)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn token(generation: u64) -> RotatedRefreshToken {
        RotatedRefreshToken {
            token: format!("5Aep861.rotated.{generation}"),
            generation,
            origin: "0123456789abcdef".into(),
        }
    }

    #[tokio::test]
    async fn the_file_is_readable_by_its_owner_only_and_keeps_the_newest_generation() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path());
        assert_eq!(store.load().await.unwrap(), None);
        store.save(&token(2)).await.unwrap();
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let dir_mode = std::fs::metadata(store.path().parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700, "{dir_mode:o}");
        // A late writer of an older generation does not replace the newer token.
        store.save(&token(1)).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(token(2)));
        store.save(&token(3)).await.unwrap();
        assert_eq!(store.load().await.unwrap(), Some(token(3)));
        // No temporary file is left behind.
        assert_eq!(
            std::fs::read_dir(store.path().parent().unwrap())
                .unwrap()
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn a_corrupt_file_is_named_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileTokenStore::new(dir.path());
        std::fs::create_dir_all(store.path().parent().unwrap()).unwrap();
        std::fs::write(store.path(), "5Aep861.not-json").unwrap();
        let err = store.load().await.unwrap_err();
        assert!(
            matches!(
                err.downcast_ref::<TokenStoreError>(),
                Some(TokenStoreError::FileNotToken { .. })
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("refresh_token.json"), "{text}");
        assert!(!text.contains("5Aep861"), "{text}");
        assert!(!format!("{err:?}").contains("5Aep861"), "{err:?}");
    }
}
