//! The wire layer over real gRPC on loopback: the hand-written client and routing agree with
//! each other on paths, messages, metadata and trailers. (The simulator's own tests check the
//! Pub/Sub behaviour; this server only echoes.)

use std::pin::Pin;

use sfsync_pubsub::{
    Auth, FetchRequest, FetchResponse, PubSub, PubSubClient, PubSubServer, SchemaInfo,
    SchemaRequest, TopicInfo, TopicRequest, error_code,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

struct Echo;

impl PubSub for Echo {
    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<FetchResponse, Status>> + Send>>;

    async fn get_topic(
        &self,
        request: Request<TopicRequest>,
    ) -> Result<Response<TopicInfo>, Status> {
        let md = request.metadata();
        let header = |k: &str| {
            md.get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        Ok(Response::new(TopicInfo {
            topic_name: request.get_ref().topic_name.clone(),
            tenant_guid: header("tenantid"),
            can_subscribe: header("accesstoken") == "tok",
            schema_id: header("instanceurl"),
            ..Default::default()
        }))
    }

    async fn get_schema(&self, _: Request<SchemaRequest>) -> Result<Response<SchemaInfo>, Status> {
        let mut status = Status::not_found("no such schema");
        status.metadata_mut().insert(
            "error-code",
            "sfdc.platform.eventbus.grpc.schema.not.found"
                .parse()
                .map_err(|_| Status::internal("x"))?,
        );
        Err(status)
    }

    async fn subscribe(
        &self,
        request: Request<Streaming<FetchRequest>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        // One response per request, reporting what was asked: proves both halves stream.
        let out = request.into_inner().map(|r| {
            r.map(|r| FetchResponse {
                latest_replay_id: r.replay_id,
                rpc_id: r.topic_name,
                pending_num_requested: r.num_requested,
                ..Default::default()
            })
        });
        Ok(Response::new(Box::pin(out)))
    }
}

async fn serve() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(PubSubServer::new(Echo))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    format!("http://{addr}")
}

fn auth() -> Auth {
    Auth {
        access_token: "tok".into(),
        instance_url: "https://example.my.salesforce.com".into(),
        tenant_id: "00Dxx0000000001".into(),
    }
}

#[tokio::test]
async fn unary_calls_carry_the_session_headers_and_errors_carry_their_trailer() {
    let mut client = PubSubClient::connect(&serve().await, auth())
        .await
        .expect("connects");
    let topic = client
        .get_topic("/data/ContactChangeEvent")
        .await
        .expect("GetTopic");
    assert_eq!(topic.topic_name, "/data/ContactChangeEvent");
    assert_eq!(topic.tenant_guid, "00Dxx0000000001");
    assert_eq!(topic.schema_id, "https://example.my.salesforce.com");
    assert!(topic.can_subscribe);
    let err = client
        .get_schema("nope")
        .await
        .expect_err("GetSchema fails");
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(
        error_code(&err),
        Some("sfdc.platform.eventbus.grpc.schema.not.found")
    );
    assert!(
        !format!("{client:?}").contains("tok\""),
        "Debug must not show the token"
    );
}

#[tokio::test]
async fn subscribe_streams_requests_and_responses_in_both_directions() {
    let mut client = PubSubClient::connect(&serve().await, auth())
        .await
        .expect("connects");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut responses = client
        .subscribe(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("Subscribe");
    for n in [5, 7] {
        tx.send(FetchRequest {
            topic_name: "/data/LeadChangeEvent".into(),
            replay_id: vec![0, n as u8],
            num_requested: n,
            ..Default::default()
        })
        .await
        .expect("send");
        let r = responses
            .message()
            .await
            .expect("a response")
            .expect("not ended");
        assert_eq!(
            (
                r.pending_num_requested,
                r.latest_replay_id,
                r.rpc_id.as_str()
            ),
            (n, vec![0, n as u8], "/data/LeadChangeEvent")
        );
    }
    drop(tx);
    assert!(responses.message().await.expect("clean end").is_none());
}

#[tokio::test]
async fn a_non_http_endpoint_is_refused_with_its_name() {
    let err = PubSubClient::connect("ftp://x", auth())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("ftp://x"), "{err}");
}
