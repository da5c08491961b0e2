//! The subscriber's side of the Pub/Sub API: a gRPC channel (TLS for `https://` endpoints,
//! plain HTTP/2 for the simulator on loopback) and the three calls sfsync makes, each carrying
//! the session headers the service requires.

use std::fmt;

use tokio_stream::Stream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status, Streaming};

use crate::proto::{
    FetchRequest, FetchResponse, SchemaInfo, SchemaRequest, TopicInfo, TopicRequest,
};
use crate::{ERROR_CODE_TRAILER, HEADER_ACCESS_TOKEN, HEADER_INSTANCE_URL, HEADER_TENANT_ID};

/// The Salesforce session an RPC runs as. Debug output leaves the token out.
#[derive(Clone)]
pub struct Auth {
    pub access_token: String,
    pub instance_url: String,
    /// The org id (`00D…`).
    pub tenant_id: String,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("access_token", &"<redacted>")
            .field("instance_url", &self.instance_url)
            .field("tenant_id", &self.tenant_id)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Pub/Sub endpoint {endpoint:?} is not usable: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("cannot connect to the Pub/Sub API at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },
    /// A header value that HTTP/2 metadata cannot carry (the value itself is not repeated: it
    /// may be the token).
    #[error("the {0} header has characters gRPC metadata cannot carry")]
    BadHeader(&'static str),
}

/// A connected Pub/Sub API client. Cheap to clone (the channel is shared).
#[derive(Clone)]
pub struct PubSubClient {
    grpc: tonic::client::Grpc<Channel>,
    auth: Auth,
}

impl fmt::Debug for PubSubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PubSubClient")
            .field("auth", &self.auth)
            .finish()
    }
}

const GET_TOPIC: &str = "/eventbus.v1.PubSub/GetTopic";
const GET_SCHEMA: &str = "/eventbus.v1.PubSub/GetSchema";
const SUBSCRIBE: &str = "/eventbus.v1.PubSub/Subscribe";

impl PubSubClient {
    /// Connects to `endpoint`: `https://api.pubsub.salesforce.com:7443` (TLS with the webpki
    /// roots) or `http://127.0.0.1:PORT` (the simulator).
    pub async fn connect(endpoint: &str, auth: Auth) -> Result<PubSubClient, ClientError> {
        let bad = |reason: String| ClientError::Endpoint {
            endpoint: endpoint.to_string(),
            reason,
        };
        let mut ep = Endpoint::from_shared(endpoint.to_string()).map_err(|e| bad(e.to_string()))?;
        if endpoint.starts_with("https://") {
            ep = ep
                .tls_config(ClientTlsConfig::new().with_webpki_roots())
                .map_err(|e| bad(e.to_string()))?;
        } else if !endpoint.starts_with("http://") {
            return Err(bad("not an http(s) URL".into()));
        }
        let channel = ep
            // Salesforce closes idle streams; HTTP/2 keepalive notices a dead peer sooner.
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| ClientError::Connect {
                endpoint: endpoint.to_string(),
                reason: error_chain(&e),
            })?;
        for (name, value) in [
            (HEADER_ACCESS_TOKEN, &auth.access_token),
            (HEADER_INSTANCE_URL, &auth.instance_url),
            (HEADER_TENANT_ID, &auth.tenant_id),
        ] {
            MetadataValue::try_from(value.as_str()).map_err(|_| ClientError::BadHeader(name))?;
        }
        Ok(PubSubClient {
            grpc: tonic::client::Grpc::new(channel),
            auth,
        })
    }

    /// Replaces the session (after a token refresh) without reconnecting.
    pub fn set_auth(&mut self, auth: Auth) {
        self.auth = auth;
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        for (name, value) in [
            (HEADER_ACCESS_TOKEN, &self.auth.access_token),
            (HEADER_INSTANCE_URL, &self.auth.instance_url),
            (HEADER_TENANT_ID, &self.auth.tenant_id),
        ] {
            // Checked in `connect`/`set_auth` callers: a value that fails here is skipped and
            // the server answers UNAUTHENTICATED, which names the problem.
            if let Ok(v) = MetadataValue::try_from(value.as_str()) {
                md.insert(name, v);
            }
        }
        request
    }

    async fn ready(&mut self) -> Result<(), Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("Pub/Sub channel not ready: {e}")))
    }

    /// `GetTopic`: whether the session may subscribe, and the topic's current schema id.
    pub async fn get_topic(&mut self, topic_name: &str) -> Result<TopicInfo, Status> {
        self.ready().await?;
        let request = self.request(TopicRequest {
            topic_name: topic_name.to_string(),
        });
        let codec = tonic_prost::ProstCodec::<TopicRequest, TopicInfo>::default();
        let response = self
            .grpc
            .unary(request, PathAndQuery::from_static(GET_TOPIC), codec)
            .await?;
        Ok(response.into_inner())
    }

    /// `GetSchema`: the Avro schema (JSON) of a schema id.
    pub async fn get_schema(&mut self, schema_id: &str) -> Result<SchemaInfo, Status> {
        self.ready().await?;
        let request = self.request(SchemaRequest {
            schema_id: schema_id.to_string(),
        });
        let codec = tonic_prost::ProstCodec::<SchemaRequest, SchemaInfo>::default();
        let response = self
            .grpc
            .unary(request, PathAndQuery::from_static(GET_SCHEMA), codec)
            .await?;
        Ok(response.into_inner())
    }

    /// `Subscribe`: `requests` is the client's half of the stream — its first item opens the
    /// subscription, every item asks for more events.
    pub async fn subscribe<S>(&mut self, requests: S) -> Result<Streaming<FetchResponse>, Status>
    where
        S: Stream<Item = FetchRequest> + Send + 'static,
    {
        self.ready().await?;
        let request = self.request(requests);
        let codec = tonic_prost::ProstCodec::<FetchRequest, FetchResponse>::default();
        let response = self
            .grpc
            .streaming(request, PathAndQuery::from_static(SUBSCRIBE), codec)
            .await?;
        Ok(response.into_inner())
    }
}

/// The Pub/Sub API's own error code of a failed call (the `error-code` trailer), if any.
pub fn error_code(status: &Status) -> Option<&str> {
    status
        .metadata()
        .get(ERROR_CODE_TRAILER)
        .and_then(|v| v.to_str().ok())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
