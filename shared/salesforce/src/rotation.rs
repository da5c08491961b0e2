//! Refresh-token rotation: where a rotated refresh token is kept between processes.
//!
//! With Refresh Token Rotation on, every `refresh_token` grant answers a new refresh token
//! and invalidates the one presented; presenting an invalidated one again "results in the
//! immediate revocation of the current refresh token and all associated access tokens"
//! (Salesforce Help, "Force one-time-use Refresh Tokens - (RTR) Refresh Token Rotation",
//! article 005316711). So a rotated token must be stored durably before it is needed
//! again — by the next cold start, or by another function that shares the connected app —
//! and every refresh must start from the newest stored token, never from the configured one
//! once the chain has moved on.
//!
//! Tokens form a chain: `generation` 1 is the first rotation of the configured token, and
//! each rotation adds one. A store never replaces a stored generation with an older one,
//! and `origin` (a fingerprint of the configured token) tells a chain that descends from the
//! current configuration from a stale one left over after the operator re-authorised.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A refresh token as the token endpoint rotated it. `Debug` hides the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatedRefreshToken {
    pub token: String,
    /// 1 for the first rotation of the configured token, one more for each rotation after.
    pub generation: u64,
    /// [`origin_of`] the configured refresh token this chain descends from.
    pub origin: String,
}

impl fmt::Debug for RotatedRefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotatedRefreshToken")
            .field("generation", &self.generation)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// A short, one-way fingerprint of a configured refresh token (SHA-256, first 16 hex
/// digits): enough to tell two configured tokens apart, useless for recovering either.
pub fn origin_of(configured_refresh_token: &str) -> String {
    let digest = Sha256::digest(configured_refresh_token.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A store's error, boxed so that each store keeps its own typed error (and its cause)
/// behind the trait object. Its `Display` must never contain a token.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// A boxed future, so that the store can be a trait object inside the client.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Where rotated refresh tokens live: a Secrets Manager secret in AWS, a file readable only
/// by its owner locally. Error messages must never contain a token.
pub trait RefreshTokenStore: Send + Sync + fmt::Debug {
    /// The newest stored token, if any.
    fn load(&self) -> StoreFuture<'_, Option<RotatedRefreshToken>>;

    /// Stores `token` durably, unless a token of the same `origin` and a newer generation is
    /// already stored (then it leaves that one and succeeds). Returns once the write is
    /// durable.
    fn save<'a>(&'a self, token: &'a RotatedRefreshToken) -> StoreFuture<'a, ()>;
}

/// Whether `candidate` should replace `stored`: a different chain (the configuration
/// changed) or a newer generation of the same chain.
pub fn supersedes(candidate: &RotatedRefreshToken, stored: Option<&RotatedRefreshToken>) -> bool {
    match stored {
        None => true,
        Some(s) => s.origin != candidate.origin || candidate.generation > s.generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(generation: u64, origin: &str) -> RotatedRefreshToken {
        RotatedRefreshToken {
            token: format!("5Aep861-secret-{generation}"),
            generation,
            origin: origin.to_string(),
        }
    }

    #[test]
    fn an_older_generation_never_replaces_a_newer_one() {
        assert!(supersedes(&token(1, "a"), None));
        assert!(supersedes(&token(3, "a"), Some(&token(2, "a"))));
        assert!(!supersedes(&token(2, "a"), Some(&token(3, "a"))));
        assert!(!supersedes(&token(3, "a"), Some(&token(3, "a"))));
        // A new configured token starts a new chain, whatever the old chain's generation.
        assert!(supersedes(&token(1, "b"), Some(&token(9, "a"))));
    }

    #[test]
    fn debug_and_origin_never_show_the_token() {
        let t = token(4, &origin_of("5Aep861-the-configured-token"));
        let shown = format!("{t:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(t.origin.len(), 16);
        assert!(!t.origin.contains("5Aep861"));
        assert_ne!(origin_of("a"), origin_of("b"));
    }
}
