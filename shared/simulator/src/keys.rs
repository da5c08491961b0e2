//! Fixed credentials for the demo and for tests.
//!
//! The RSA key pair below is a **test key**, generated once with `openssl genrsa 2048` for
//! this simulator. It protects nothing: it exists so that the JWT bearer flow can be
//! exercised end to end without any real Salesforce connected app. Never use it elsewhere.

/// Private half of the demo/test RSA key (PKCS#8 PEM). A test key: see the module docs.
pub const DEMO_PRIVATE_KEY_PEM: &str = "\
-----BEGIN PRIVATE KEY-----
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQDLPmppeG5ZS/s+
WpJy4gkL+Qr1s57IQVY9DaNEzgoogThVZNSmFuOdm/fz/oxqr+TJ6ta+qXZFXrP9
bitQk+fT93M2W09ehDHELvMyEBgOaWk8pNdgNfFATU5t5XyBNZIgbgwH3QxTGdZq
ACit7GbIMQ3EhjA2TSmJDby8q7iv0ZoI7P4bYQPCb9hLlUVvf5w81kZI8bpwkXZc
UDDdD4GZCPbLY5nU+7JE3qtp5vb9adG12oGUaDobwsj+laEpWQFV4dtPpWMGFENL
sNQp6SLtQNQNuQ2ZtqSmnzjjFeQaPCp+5gvExfJeEjGhQkD3PkpBCP7xUIpoGge1
ZlfpqfgbAgMBAAECggEADoPkJKkxtFXtWRwt1l+XRtAf/ME5x1KHPrABJ5JRfmgQ
JmUfnMcItYJkmHvm+l2aiOMpOA+xPy4Oy7w5ArW1ellzVH/78KOfTEQQIVSt6yWT
Gv4o1Zm0o6OBxO59UFsLlx5U5KDgVvUC76oYPaejBYwfUBhHTDGBlGSzRIQ9Ge1N
GZS3FAZmFq8soNVFjcF5cqNoODURkbg2WxNGnuRd9vW/R1xZ2GAmn+UDV1hM1IgG
Ub01Gi+llmBLBL5T9jZ4R1flLd99TcwL/x2B9AIuhYxPZ8yYkighWywPUCeJU14P
cDNpHFfnwY0qwMVDs8ELg0ePeiyqC8DyYPxeYLiFlQKBgQD04BiPiMRlShwR8fAS
hs7EI98YUS6GoXNoKDdMstxK/syrXNvIkShwOrsa+iLE7n6cW0yHWytlMXwD5BOG
FbK1ZRx9wlv1w21s1JWhdPtkqnkkgRFwQxfaq3DCI1aV0T2c4Q6IGHu0mGCLCbUf
lyfRXuCqceBJLtj9h7NjvuldNwKBgQDUeiThLEdX4a7MLL8FZrThY7bWshe36LoD
obLm1fFsS4uP4G0BcFjgvBTknrbeI1P1IJqQ4wZQK0m6rqF2TklQyo6WT4bk8dkW
HxMLdlKnYsIqAW2zHtkC2PJv2IFIYiIIlYJWUSPQB3EKDuwVGGV97MqtnEhJu7O6
WtYTT5hOPQKBgQDy/gFBRX1l6bGLGSKar800E0iJr91UWZfUzrt5T6+Md+WPUpkC
IREYtR8AOSERfHyFGZAKbSzVwNIIZmX9U0DAAfLQ1HI+oUvPh/BnhFcGYKfP0ogE
d3+PTTqaW0jLaBQUvbuWz3zKC78ZmWtzSqKHf/e/Czt+Q4+tneAkZcja5wKBgQDQ
7H2A76IDFsVivAjkTbZD/WFWQG20B2GImqGn+uxVuP607U8h4A90g1vj5PAZAxHV
8UYqeyDFCZuItZfMFXRfvZxwzifszKXR66I1XhYtwpz64sa0HvvxodLZCUEuJFgk
qqYrK8OUFQ0gf8XBhGifZotwJECsR6WU8yaWfGhdXQKBgQCj9hm+WGYgOeeT9RjJ
X19jcmzBPNDEOYuymOV7GqshjUaS76691iHudrxQuviRKvl5Odri9RfRjb107qA4
3Cou6ynN85j/iab3ttaqa/b/ugMmMVRZUOos7hzSTwUItWpypDek72C7YHWUVTvG
WaV8cPHVtbI1lf5OplYUpVKNMQ==
-----END PRIVATE KEY-----
";

/// Public half of the demo/test RSA key (SubjectPublicKeyInfo PEM).
pub const DEMO_PUBLIC_KEY_PEM: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyz5qaXhuWUv7PlqScuIJ
C/kK9bOeyEFWPQ2jRM4KKIE4VWTUphbjnZv38/6Maq/kyerWvql2RV6z/W4rUJPn
0/dzNltPXoQxxC7zMhAYDmlpPKTXYDXxQE1ObeV8gTWSIG4MB90MUxnWagAorexm
yDENxIYwNk0piQ28vKu4r9GaCOz+G2EDwm/YS5VFb3+cPNZGSPG6cJF2XFAw3Q+B
mQj2y2OZ1PuyRN6raeb2/WnRtdqBlGg6G8LI/pWhKVkBVeHbT6VjBhRDS7DUKeki
7UDUDbkNmbakpp844xXkGjwqfuYLxMXyXhIxoUJA9z5KQQj+8VCKaBoHtWZX6an4
GwIDAQAB
-----END PUBLIC KEY-----
";

/// What the simulated org's connected app and integration user accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The connected app's consumer key; also the JWT `iss`.
    pub client_id: String,
    /// The connected app's consumer secret (client_credentials, optional for refresh_token).
    pub client_secret: String,
    /// The one refresh token the org honours (it is never rotated).
    pub refresh_token: String,
    /// The integration user's username; the JWT `sub`.
    pub username: String,
    /// PEM public key that JWT assertions must verify against; `None` disables the JWT flow.
    pub jwt_public_key_pem: Option<String>,
}

impl Credentials {
    /// Fixed demo values, with the demo/test key pair for the JWT flow.
    pub fn demo() -> Self {
        Credentials {
            client_id: "3MVG9sfsyncDemoConsumerKey.simulator".to_string(),
            client_secret: "sfsync-demo-consumer-secret".to_string(),
            refresh_token: "5Aep861sfsyncDemoRefreshToken.simulator".to_string(),
            username: "integration@sfsync-demo.example".to_string(),
            jwt_public_key_pem: Some(DEMO_PUBLIC_KEY_PEM.to_string()),
        }
    }
}
