//! The client's errors. No variant ever holds a token, a secret or a private key: messages
//! that come from a server are passed through [`Redactor`] before they are stored.

use std::fmt;

use chrono::{DateTime, Utc};

/// One problem found when checking a sync against the org's describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The sync key the problem is about: `"object"`, `"user_id"`, `"fields[2]"`, …
    pub key: String,
    /// What is wrong, with "did you mean …?" suggestions where a near name exists.
    pub message: String,
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn problems_text(problems: &[FieldProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client configuration cannot work (missing credential, bad PEM key, bad URL).
    #[error("invalid Salesforce client configuration: {message}")]
    Config { message: String },

    /// OAuth failed, or a fresh token was rejected. The message never contains a secret.
    #[error("Salesforce authentication failed: {message}")]
    Auth { message: String },

    /// An error answered by the REST or Bulk API (`[{"errorCode","message"}]`).
    #[error("Salesforce API error (HTTP {status}) {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },

    /// The org's daily API request budget is used up: either the configured
    /// `max_api_share` was reached or Salesforce answered 403 `REQUEST_LIMIT_EXCEEDED`.
    /// Resumable later from the last checkpoint; never retried in a loop.
    #[error(
        "Salesforce daily API request limit reached ({used} of {max} requests used); resume later"
    )]
    ApiLimit { used: u64, max: u64 },

    /// The sync does not match the org's describe.
    #[error(
        "the sync does not match the Salesforce org: {}",
        problems_text(problems)
    )]
    InvalidSync { problems: Vec<FieldProblem> },

    /// The request did not get an answer: connection refused or reset, timeout, truncated
    /// body.
    #[error("HTTP request to Salesforce failed: {message}")]
    Http { message: String, retryable: bool },

    /// The answer was not what the API documents.
    #[error("unexpected response from Salesforce: {message}")]
    Decode { message: String },

    /// A Bulk API 2.0 query job ended `Failed` or `Aborted`.
    #[error("Bulk API query job {job_id} ended in state {state}: {message}")]
    BulkJob {
        job_id: String,
        state: String,
        message: String,
    },

    /// getDeleted cannot look this far back (Salesforce keeps about 15 days of deletions);
    /// a full resync is needed to find hard deletes older than `earliest`.
    #[error(
        "deleted records cannot be listed from {start}: Salesforce only keeps them from {earliest} \
         (about 15 days); run a full resync to catch older hard deletes"
    )]
    DeletedTooOld {
        start: DateTime<Utc>,
        earliest: DateTime<Utc>,
    },
}

impl Error {
    /// Whether trying the same request again later may succeed (5xx, timeouts, connection
    /// errors). The daily limit is not retryable: it is resumable, on a later run.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Http { retryable, .. } => *retryable,
            Error::Api { status, code, .. } => {
                *status >= 500 || *status == 429 || code == "SERVER_UNAVAILABLE"
            }
            _ => false,
        }
    }

    /// The daily limit was reached (see [`Error::ApiLimit`]).
    pub fn is_api_limit(&self) -> bool {
        matches!(self, Error::ApiLimit { .. })
    }

    /// The `errorCode` of an API error.
    pub fn api_code(&self) -> Option<&str> {
        match self {
            Error::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn decode(message: impl Into<String>) -> Error {
        Error::Decode {
            message: message.into(),
        }
    }

    pub(crate) fn config(message: impl Into<String>) -> Error {
        Error::Config {
            message: message.into(),
        }
    }
}

/// Replaces every known secret inside server-provided text.
#[derive(Clone, Default)]
pub(crate) struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub(crate) fn new(secrets: impl IntoIterator<Item = String>) -> Redactor {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            // Very short values would redact ordinary words; real secrets are long.
            .filter(|s| s.len() >= 6)
            .collect();
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub(crate) fn add(&mut self, secret: &str) {
        if secret.len() >= 6 && !self.secrets.iter().any(|s| s == secret) {
            self.secrets.push(secret.to_string());
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub(crate) fn clean(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "<redacted>");
            }
        }
        out
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redactor_replaces_every_occurrence_longest_first() {
        let r = Redactor::new(["abcdefgh".to_string(), "abcdefghijkl".to_string()]);
        assert_eq!(
            r.clean("x abcdefghijkl y abcdefgh"),
            "x <redacted> y <redacted>"
        );
    }

    #[test]
    fn retryable_classification() {
        let e = Error::Api {
            status: 503,
            code: "SERVER_UNAVAILABLE".into(),
            message: "down".into(),
        };
        assert!(e.is_retryable());
        assert!(!Error::ApiLimit { used: 1, max: 1 }.is_retryable());
        let e = Error::Api {
            status: 400,
            code: "INVALID_FIELD".into(),
            message: "no".into(),
        };
        assert!(!e.is_retryable());
    }
}
