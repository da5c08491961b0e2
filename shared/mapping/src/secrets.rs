//! `${secret:NAME}` and `${env:NAME}` references inside config values.
//!
//! Errors name the reference, never a resolved value, so that a secret cannot leak through a
//! message about it.

use std::collections::HashMap;

/// Where references are looked up.
pub trait Resolver {
    fn secret(&self, name: &str) -> Option<String>;
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

/// Secrets from a JSON object of strings (the `--secrets` file, or the Secrets Manager
/// secret's value).
#[derive(Default, Clone)]
pub struct SecretMap(pub HashMap<String, String>);

impl std::fmt::Debug for SecretMap {
    // Never print values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<_> = self.0.keys().collect();
        keys.sort();
        f.debug_struct("SecretMap").field("keys", &keys).finish()
    }
}

impl SecretMap {
    /// Parses a JSON object whose values are strings. The error names the offending key,
    /// never a value.
    pub fn from_json(text: &str) -> Result<SecretMap, ReferenceError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ReferenceError::SecretsFile {
                message: format!("not valid JSON (line {}, column {})", e.line(), e.column()),
            })?;
        let serde_json::Value::Object(map) = value else {
            return Err(ReferenceError::SecretsFile {
                message: "must be a JSON object of strings".into(),
            });
        };
        let mut out = HashMap::with_capacity(map.len());
        for (k, v) in map {
            match v {
                serde_json::Value::String(s) => {
                    out.insert(k, s);
                }
                _ => {
                    return Err(ReferenceError::SecretsFile {
                        message: format!("the value of {k:?} must be a string"),
                    });
                }
            }
        }
        Ok(SecretMap(out))
    }
}

impl Resolver for SecretMap {
    fn secret(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("unterminated reference: `${{` without a closing `}}`")]
    Unterminated,
    #[error("unknown reference `${{{0}}}`: use ${{secret:NAME}} or ${{env:NAME}}")]
    UnknownScheme(String),
    #[error("empty name in reference `${{{0}:}}`")]
    EmptyName(&'static str),
    #[error("secret {0:?} is not in the secrets")]
    MissingSecret(String),
    #[error("environment variable {0:?} is not set")]
    MissingEnv(String),
    #[error("secrets file: {message}")]
    SecretsFile { message: String },
}

enum Piece<'a> {
    Text(&'a str),
    Secret(&'a str),
    Env(&'a str),
}

fn pieces(value: &str) -> Result<Vec<Piece<'_>>, ReferenceError> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or(ReferenceError::Unterminated)?;
        let inner = &after[..end];
        let piece = match inner.split_once(':') {
            Some(("secret", name)) if !name.is_empty() => Piece::Secret(name),
            Some(("env", name)) if !name.is_empty() => Piece::Env(name),
            Some(("secret", _)) => return Err(ReferenceError::EmptyName("secret")),
            Some(("env", _)) => return Err(ReferenceError::EmptyName("env")),
            _ => return Err(ReferenceError::UnknownScheme(inner.to_string())),
        };
        out.push(piece);
        rest = &after[end + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// True when the value contains a reference.
pub fn has_reference(value: &str) -> bool {
    value.contains("${")
}

/// Checks the syntax of every reference in `value`.
pub fn check_syntax(value: &str) -> Result<(), ReferenceError> {
    pieces(value).map(|_| ())
}

/// The names of the secrets a value refers to.
pub fn secret_names(value: &str) -> Vec<String> {
    pieces(value)
        .map(|ps| {
            ps.into_iter()
                .filter_map(|p| match p {
                    Piece::Secret(n) => Some(n.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Replaces every reference in `value`.
pub fn resolve(value: &str, resolver: &dyn Resolver) -> Result<String, ReferenceError> {
    if !has_reference(value) {
        return Ok(value.to_string());
    }
    let mut out = String::with_capacity(value.len());
    for piece in pieces(value)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Secret(name) => out.push_str(
                &resolver
                    .secret(name)
                    .ok_or_else(|| ReferenceError::MissingSecret(name.to_string()))?,
            ),
            Piece::Env(name) => out.push_str(
                &resolver
                    .env(name)
                    .ok_or_else(|| ReferenceError::MissingEnv(name.to_string()))?,
            ),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Resolver for Fixed {
        fn secret(&self, name: &str) -> Option<String> {
            (name == "key").then(|| "s3cr3t".to_string())
        }
        fn env(&self, name: &str) -> Option<String> {
            (name == "HOST").then(|| "example.com".to_string())
        }
    }

    #[test]
    fn resolves_whole_and_embedded_references() {
        assert_eq!(resolve("${secret:key}", &Fixed).unwrap(), "s3cr3t");
        assert_eq!(
            resolve("https://${env:HOST}/v1?k=${secret:key}", &Fixed).unwrap(),
            "https://example.com/v1?k=s3cr3t"
        );
        assert_eq!(resolve("plain", &Fixed).unwrap(), "plain");
    }

    #[test]
    fn missing_references_are_named_without_values() {
        assert_eq!(
            resolve("${secret:other}", &Fixed),
            Err(ReferenceError::MissingSecret("other".into()))
        );
        assert_eq!(
            resolve("${env:NOPE}", &Fixed),
            Err(ReferenceError::MissingEnv("NOPE".into()))
        );
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            check_syntax("${secret:x"),
            Err(ReferenceError::Unterminated)
        );
        assert_eq!(
            check_syntax("${vault:x}"),
            Err(ReferenceError::UnknownScheme("vault:x".into()))
        );
        assert_eq!(
            check_syntax("${secret:}"),
            Err(ReferenceError::EmptyName("secret"))
        );
        assert!(check_syntax("a ${env:B} c").is_ok());
    }

    #[test]
    fn secrets_file_errors_name_the_key_not_the_value() {
        let err = SecretMap::from_json(r#"{"a":"x","b":12345}"#).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"b\""), "{msg}");
        assert!(!msg.contains("12345"), "{msg}");
        assert!(SecretMap::from_json("[1]").is_err());
        assert!(SecretMap::from_json("{").is_err());
    }

    #[test]
    fn debug_never_prints_values() {
        let map = SecretMap::from_json(r#"{"token":"hunter2"}"#).unwrap();
        let dbg = format!("{map:?}");
        assert!(dbg.contains("token") && !dbg.contains("hunter2"));
    }

    #[test]
    fn lists_secret_names() {
        assert_eq!(
            secret_names("${secret:a}-${env:B}-${secret:c}"),
            vec!["a".to_string(), "c".to_string()]
        );
    }
}
