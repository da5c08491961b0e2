//! Shared helpers: start a simulator, get a token, make API calls.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};
use sfsync_simulator::{Credentials, Faults, Org, OrgSpec, Simulator, SimulatorHandle};

pub const V: &str = "62.0";

pub struct Api {
    pub sim: SimulatorHandle,
    pub http: reqwest::Client,
    pub token: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    }

    /// The errorCode of a REST error array.
    pub fn error_code(&self) -> String {
        self.json()[0]["errorCode"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }
}

pub fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

pub async fn start(org: Org) -> Api {
    start_with(org, Faults::default()).await
}

pub async fn start_with(org: Org, faults: Faults) -> Api {
    let sim = Simulator::start(org, Credentials::demo(), faults)
        .await
        .expect("simulator starts");
    let http = reqwest::Client::new();
    let token = client_credentials_token(&http, &sim.url()).await;
    Api { sim, http, token }
}

pub async fn tiny() -> Api {
    start(Org::generate(&OrgSpec::tiny())).await
}

pub async fn client_credentials_token(http: &reqwest::Client, url: &str) -> String {
    let c = Credentials::demo();
    let resp = http
        .post(format!("{url}/services/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.as_str()),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.expect("token JSON");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    Reply {
        status,
        headers,
        text,
    }
}

impl Api {
    pub fn url(&self) -> String {
        self.sim.url()
    }

    /// GET a path under the instance URL (absolute path, e.g. a nextRecordsUrl).
    pub async fn get(&self, path: &str) -> Reply {
        let resp = self
            .http
            .get(format!("{}{path}", self.url()))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        reply(resp).await
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> Reply {
        let resp = self
            .http
            .get(format!("{}{path}", self.url()))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        reply(resp).await
    }

    pub async fn query_batch(&self, endpoint: &str, soql: &str, batch: Option<u32>) -> Reply {
        let mut req = self
            .http
            .get(format!("{}/services/data/v{V}/{endpoint}", self.url()))
            .query(&[("q", soql)])
            .bearer_auth(&self.token);
        if let Some(b) = batch {
            req = req.header("Sforce-Query-Options", format!("batchSize={b}"));
        }
        reply(req.send().await.expect("request")).await
    }

    pub async fn query(&self, soql: &str) -> Reply {
        self.query_batch("query", soql, None).await
    }

    pub async fn query_all(&self, soql: &str) -> Reply {
        self.query_batch("queryAll", soql, None).await
    }

    /// Every record of a query, following nextRecordsUrl.
    pub async fn query_records(
        &self,
        endpoint: &str,
        soql: &str,
        batch: Option<u32>,
    ) -> Vec<Value> {
        let first = self.query_batch(endpoint, soql, batch).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        let mut page = first.json();
        let mut out = Vec::new();
        loop {
            out.extend(page["records"].as_array().cloned().unwrap_or_default());
            if page["done"] == Value::Bool(true) {
                break;
            }
            let next = page["nextRecordsUrl"]
                .as_str()
                .expect("nextRecordsUrl")
                .to_string();
            let r = self.get(&next).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            page = r.json();
        }
        out
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        let resp = self
            .http
            .post(format!("{}{path}", self.url()))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("request");
        reply(resp).await
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> Reply {
        let resp = self
            .http
            .patch(format!("{}{path}", self.url()))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("request");
        reply(resp).await
    }

    pub async fn token_form(&self, form: &[(&str, &str)]) -> Reply {
        let resp = self
            .http
            .post(format!("{}/services/oauth2/token", self.url()))
            .form(form)
            .send()
            .await
            .expect("request");
        reply(resp).await
    }
}
