//! The server side of `eventbus.v1.PubSub`: a trait with the three RPCs sfsync needs and the
//! HTTP/2 routing tonic's generated code would provide (written by hand: no protoc). The
//! simulator implements the trait; other RPCs answer `UNIMPLEMENTED`.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio_stream::Stream;
use tonic::codegen::{Body, BoxFuture, StdError, http};
use tonic::{Request, Response, Status, Streaming};

use crate::proto::{
    FetchRequest, FetchResponse, SchemaInfo, SchemaRequest, TopicInfo, TopicRequest,
};

/// What a Pub/Sub API server answers.
pub trait PubSub: Send + Sync + 'static {
    /// The server's half of a `Subscribe` stream.
    type SubscribeStream: Stream<Item = Result<FetchResponse, Status>> + Send + 'static;

    fn get_topic(
        &self,
        request: Request<TopicRequest>,
    ) -> impl Future<Output = Result<Response<TopicInfo>, Status>> + Send;

    fn get_schema(
        &self,
        request: Request<SchemaRequest>,
    ) -> impl Future<Output = Result<Response<SchemaInfo>, Status>> + Send;

    fn subscribe(
        &self,
        request: Request<Streaming<FetchRequest>>,
    ) -> impl Future<Output = Result<Response<Self::SubscribeStream>, Status>> + Send;
}

/// Routes gRPC requests to a [`PubSub`] implementation; add it to a
/// `tonic::transport::Server`.
#[derive(Debug)]
pub struct PubSubServer<T> {
    inner: Arc<T>,
}

impl<T> PubSubServer<T> {
    pub fn new(inner: T) -> Self {
        PubSubServer {
            inner: Arc::new(inner),
        }
    }
}

impl<T> Clone for PubSubServer<T> {
    fn clone(&self) -> Self {
        PubSubServer {
            inner: self.inner.clone(),
        }
    }
}

impl<T> tonic::server::NamedService for PubSubServer<T> {
    const NAME: &'static str = "eventbus.v1.PubSub";
}

struct GetTopic<T>(Arc<T>);

impl<T: PubSub> tonic::server::UnaryService<TopicRequest> for GetTopic<T> {
    type Response = TopicInfo;
    type Future = BoxFuture<Response<TopicInfo>, Status>;
    fn call(&mut self, request: Request<TopicRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.get_topic(request).await })
    }
}

struct GetSchema<T>(Arc<T>);

impl<T: PubSub> tonic::server::UnaryService<SchemaRequest> for GetSchema<T> {
    type Response = SchemaInfo;
    type Future = BoxFuture<Response<SchemaInfo>, Status>;
    fn call(&mut self, request: Request<SchemaRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.get_schema(request).await })
    }
}

struct Subscribe<T>(Arc<T>);

impl<T: PubSub> tonic::server::StreamingService<FetchRequest> for Subscribe<T> {
    type Response = FetchResponse;
    type ResponseStream = T::SubscribeStream;
    type Future = BoxFuture<Response<T::SubscribeStream>, Status>;
    fn call(&mut self, request: Request<Streaming<FetchRequest>>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.subscribe(request).await })
    }
}

impl<T, B> tonic::codegen::Service<http::Request<B>> for PubSubServer<T>
where
    T: PubSub,
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        match req.uri().path() {
            "/eventbus.v1.PubSub/GetTopic" => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<TopicInfo, TopicRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(GetTopic(inner), req).await)
            }),
            "/eventbus.v1.PubSub/GetSchema" => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<SchemaInfo, SchemaRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.unary(GetSchema(inner), req).await)
            }),
            "/eventbus.v1.PubSub/Subscribe" => Box::pin(async move {
                let codec = tonic_prost::ProstCodec::<FetchResponse, FetchRequest>::default();
                let mut grpc = tonic::server::Grpc::new(codec);
                Ok(grpc.streaming(Subscribe(inner), req).await)
            }),
            other => {
                let status = Status::unimplemented(format!("{other} is not served here"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
