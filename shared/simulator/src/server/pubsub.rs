//! The Pub/Sub API (gRPC) of the simulated org: `GetTopic`, `GetSchema` and `Subscribe` on
//! the change-event channels (`/data/ContactChangeEvent`, …), serving the org's change
//! journal (`crate::cdc`) as Avro-encoded change events.
//!
//! Behaviour follows `pubsub_api.proto` (forcedotcom/pub-sub-api) and the Pub/Sub API
//! developer guide: every call needs the `accesstoken`, `instanceurl` and `tenantid` headers
//! of a live session ("Supported Authentication", otherwise UNAUTHENTICATED with error code
//! `sfdc.platform.eventbus.grpc.service.auth.error`); the first `FetchRequest` names the topic
//! and where to start (LATEST, EARLIEST, or CUSTOM after a replay id), later ones only add to
//! the number of events the client will take (flow control), and a later request naming
//! another topic is INVALID_ARGUMENT; a CUSTOM replay id older than the retention window is
//! INVALID_ARGUMENT with `…fetch.replayid.validation.failed` ("Handle Errors"); with nothing
//! to send the server answers an empty `FetchResponse` carrying the latest replay id as a
//! keepalive (real service: within 270 s; configurable here).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value as Avro;
use base64::Engine;
use sfsync_pubsub::cdc::{ChangeEventHeader, encode_bitmap, encode_event, header_schema_json};
use sfsync_pubsub::{
    ConsumerEvent, FetchRequest, FetchResponse, ProducerEvent, PubSub, PubSubServer, ReplayPreset,
    SchemaInfo, SchemaRequest, TopicInfo, TopicRequest,
};
use sha2::Digest;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::Stream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

use super::{Shared, SimulatorHandle};
use crate::cdc::{ChangeJournal, DEFAULT_RETENTION, JournalEvent};
use crate::org::Org;
use crate::schema::{FieldType, ObjectDef, Schema, Storage};
use crate::value::Val;

/// How the Pub/Sub server behaves.
#[derive(Debug, Clone)]
pub struct PubSubOptions {
    /// Objects with Change Data Capture enabled; `None` = every object.
    pub objects: Option<Vec<String>>,
    /// How long change events stay replayable (org clock). Salesforce: 72 hours.
    pub retention: chrono::Duration,
    /// How long a subscription with nothing to deliver waits before an empty keepalive
    /// response. Salesforce: within 270 seconds.
    pub keepalive: Duration,
    /// Most events in one `FetchResponse`.
    pub max_events_per_response: usize,
}

impl Default for PubSubOptions {
    fn default() -> Self {
        PubSubOptions {
            objects: None,
            retention: DEFAULT_RETENTION,
            keepalive: Duration::from_secs(270),
            max_events_per_response: 100,
        }
    }
}

/// A running Pub/Sub server. Dropping it stops the server.
pub struct PubSubHandle {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl PubSubHandle {
    /// `http://127.0.0.1:PORT`: the endpoint a client connects to (plain HTTP/2).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Stops the server and waits for it (open subscriptions are cut).
    pub async fn shutdown(mut self) {
        super::stop_and_wait(self.stop.take(), self.task.take()).await;
    }
}

impl Drop for PubSubHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl SimulatorHandle {
    /// Turns Change Data Capture on in the org and serves its Pub/Sub API on a free
    /// loopback port.
    pub async fn start_pubsub(&self, options: PubSubOptions) -> std::io::Result<PubSubHandle> {
        self.start_pubsub_on(SocketAddr::from(([127, 0, 0, 1], 0)), options)
            .await
    }

    /// As [`SimulatorHandle::start_pubsub`], on `addr` (port 0 picks a free one).
    pub async fn start_pubsub_on(
        &self,
        addr: SocketAddr,
        options: PubSubOptions,
    ) -> std::io::Result<PubSubHandle> {
        let schema = {
            let mut org = self.shared.org();
            org.enable_change_events(options.retention);
            org.schema.clone()
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let service = Service {
            shared: self.shared.clone(),
            schemas: Arc::new(EventSchemas::build(&schema, options.objects.as_deref())),
            options,
        };
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(PubSubServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "Pub/Sub server stopped with an error");
            }
        });
        Ok(PubSubHandle {
            url,
            stop: Some(tx),
            task: Some(task),
        })
    }
}

/// The Avro schema of one object's change events.
struct EventSchema {
    id: String,
    json: String,
    avro: apache_avro::Schema,
    /// The record fields after the header, in schema order.
    fields: Vec<(String, FieldType)>,
}

struct EventSchemas {
    by_object: HashMap<String, Arc<EventSchema>>,
    by_id: HashMap<String, Arc<EventSchema>>,
}

impl EventSchemas {
    fn build(schema: &Schema, objects: Option<&[String]>) -> EventSchemas {
        let mut by_object = HashMap::new();
        let mut by_id = HashMap::new();
        for def in &schema.objects {
            if objects.is_some_and(|o| !o.iter().any(|n| n.eq_ignore_ascii_case(&def.name))) {
                continue;
            }
            match EventSchema::of(def) {
                Ok(s) => {
                    let s = Arc::new(s);
                    by_id.insert(s.id.clone(), s.clone());
                    by_object.insert(def.name.clone(), s);
                }
                Err(e) => tracing::warn!(object = %def.name, error = %e, "no change event schema"),
            }
        }
        EventSchemas { by_object, by_id }
    }

    fn for_object(&self, object: &str) -> Option<&Arc<EventSchema>> {
        self.by_object
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(object))
            .map(|(_, v)| v)
    }
}

impl EventSchema {
    fn of(def: &ObjectDef) -> Result<EventSchema, apache_avro::Error> {
        let mut fields = Vec::new();
        let mut json_fields =
            vec![serde_json::json!({"name": "ChangeEventHeader", "type": header_schema_json()})];
        for f in &def.fields {
            if ["Id", "IsDeleted", "SystemModstamp"].contains(&f.name.as_str())
                || !matches!(f.storage, Storage::Column(_))
            {
                continue;
            }
            let ty = match f.ty {
                FieldType::Boolean => serde_json::json!("boolean"),
                FieldType::Int => serde_json::json!("int"),
                FieldType::Double | FieldType::Currency | FieldType::Percent => {
                    serde_json::json!("double")
                }
                FieldType::Date => serde_json::json!({"type": "int", "logicalType": "date"}),
                FieldType::DateTime => {
                    serde_json::json!({"type": "long", "logicalType": "timestamp-millis"})
                }
                _ => serde_json::json!("string"),
            };
            json_fields
                .push(serde_json::json!({"name": f.name, "type": ["null", ty], "default": null}));
            fields.push((f.name.clone(), f.ty));
        }
        let name = sfsync_pubsub::change_event_topic(&def.name)
            .trim_start_matches("/data/")
            .to_string();
        let json = serde_json::json!({
            "type": "record",
            "name": name,
            "namespace": "com.sforce.eventbus",
            "fields": json_fields,
        })
        .to_string();
        let avro = apache_avro::Schema::parse_str(&json)?;
        // A schema id is a fingerprint of the schema (pubsub_api.proto: "Schema fingerprint").
        let digest = sha2::Sha256::digest(json.as_bytes());
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]);
        Ok(EventSchema {
            id,
            json,
            avro,
            fields,
        })
    }

    /// A recorded event as the Avro datum `ProducerEvent.payload` carries.
    fn encode(
        &self,
        event: &JournalEvent,
        schema_position: impl Fn(&str) -> Option<usize>,
    ) -> Result<Vec<u8>, Status> {
        let bitmap = |names: &[String]| -> Vec<String> {
            let positions: Vec<usize> = names.iter().filter_map(|n| schema_position(n)).collect();
            if positions.is_empty() {
                Vec::new()
            } else {
                vec![encode_bitmap(&positions)]
            }
        };
        let header = ChangeEventHeader {
            entity_name: event.object.clone(),
            record_ids: event.record_ids.clone(),
            change_type: event.change_type,
            change_origin: "com/salesforce/api/rest/62.0".into(),
            transaction_key: event.transaction_key.clone(),
            sequence_number: event.sequence,
            commit_timestamp: event.commit_ms,
            commit_number: i64::try_from(event.replay).unwrap_or(i64::MAX),
            commit_user: event.commit_user.clone(),
            nulled_fields: Vec::new(),
            diff_fields: Vec::new(),
            changed_fields: Vec::new(),
        };
        let values = self
            .fields
            .iter()
            .map(|(name, ty)| {
                let value = event
                    .fields
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(Avro::Null, |(_, v)| to_avro(*ty, v));
                let branch = u32::from(!matches!(value, Avro::Null));
                (name.clone(), Avro::Union(branch, Box::new(value)))
            })
            .collect();
        encode_event(
            &self.avro,
            &header,
            [&bitmap(&event.nulled), &[], &bitmap(&event.changed)],
            values,
        )
        .map_err(|e| Status::internal(e.to_string()))
    }

    fn position(&self, name: &str) -> Option<usize> {
        // Position 0 is the header.
        self.fields
            .iter()
            .position(|(n, _)| n == name)
            .map(|p| p + 1)
    }
}

fn to_avro(ty: FieldType, v: &Val) -> Avro {
    match (ty, v) {
        (_, Val::Null) => Avro::Null,
        (FieldType::Boolean, Val::Bool(b)) => Avro::Boolean(*b),
        (FieldType::Int, Val::Int(n)) => Avro::Int(i32::try_from(*n).unwrap_or(i32::MAX)),
        (FieldType::Double | FieldType::Currency | FieldType::Percent, Val::Num(x)) => {
            Avro::Double(*x)
        }
        (FieldType::Double | FieldType::Currency | FieldType::Percent, Val::Int(n)) => {
            Avro::Double(*n as f64)
        }
        (FieldType::Date, Val::Date(d)) => Avro::Date(*d),
        (FieldType::DateTime, Val::DateTime(ms)) => Avro::TimestampMillis(*ms),
        (_, Val::Str(s)) => Avro::String(s.to_string()),
        (_, Val::Bool(b)) => Avro::String(b.to_string()),
        (_, Val::Int(n)) => Avro::String(n.to_string()),
        (_, Val::Num(x)) => Avro::String(x.to_string()),
        (_, Val::Date(d)) => Avro::String(crate::value::format_date(*d)),
        (_, Val::DateTime(ms)) => Avro::String(crate::value::format_rest_datetime(*ms)),
    }
}

fn replay_bytes(replay: u64) -> Vec<u8> {
    replay.to_be_bytes().to_vec()
}

fn rpc_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn with_code(mut status: Status, code: &str) -> Status {
    if let Ok(v) = code.parse() {
        status
            .metadata_mut()
            .insert(sfsync_pubsub::ERROR_CODE_TRAILER, v);
    }
    status
}

struct Service {
    shared: Arc<Shared>,
    schemas: Arc<EventSchemas>,
    options: PubSubOptions,
}

impl Service {
    /// The session headers of a call, checked against the sessions the OAuth endpoint issued.
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let md = request.metadata();
        let header = |k: &str| md.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
        let token = header(sfsync_pubsub::HEADER_ACCESS_TOKEN);
        let instance = header(sfsync_pubsub::HEADER_INSTANCE_URL).trim_end_matches('/');
        let tenant = header(sfsync_pubsub::HEADER_TENANT_ID);
        let org_id = super::oauth::ORG_ID;
        // Both the 15- and 18-character forms of the org id identify it.
        let tenant_ok = !tenant.is_empty()
            && (tenant == org_id || (tenant.len() == 15 && org_id.starts_with(tenant)));
        let live = !token.is_empty() && self.shared.rt().tokens.contains_key(token);
        if live && tenant_ok && instance == self.shared.url {
            return Ok(());
        }
        // The message never repeats the token.
        let missing = [
            (sfsync_pubsub::HEADER_ACCESS_TOKEN, live),
            (
                sfsync_pubsub::HEADER_INSTANCE_URL,
                instance == self.shared.url,
            ),
            (sfsync_pubsub::HEADER_TENANT_ID, tenant_ok),
        ]
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(k, _)| *k)
        .collect::<Vec<_>>()
        .join(", ");
        Err(with_code(
            Status::unauthenticated(format!(
                "authentication failed: check {missing}; rpcId: {}",
                rpc_id()
            )),
            sfsync_pubsub::ERROR_AUTH,
        ))
    }

    fn topic(&self, topic: &str) -> Result<(String, Arc<EventSchema>), Status> {
        let object = sfsync_pubsub::object_of_topic(topic).ok_or_else(|| {
            Status::invalid_argument(format!("{topic:?} is not a change event channel"))
        })?;
        let schema = self.schemas.for_object(&object).ok_or_else(|| {
            Status::not_found(format!(
                "topic {topic} not found: Change Data Capture is not enabled for {object}"
            ))
        })?;
        let name = self
            .schemas
            .by_object
            .iter()
            .find(|(_, v)| Arc::ptr_eq(v, schema))
            .map(|(k, _)| k.clone())
            .unwrap_or(object);
        Ok((name, schema.clone()))
    }

    /// Events of `object` after `position` (at most `max`), and the bus's latest position.
    fn read(
        &self,
        object: &str,
        position: u64,
        max: usize,
    ) -> Result<(Vec<JournalEvent>, u64), Status> {
        let mut org = self.shared.org();
        let journal = trimmed_journal(&mut org)?;
        Ok((journal.after(position, object, max), journal.latest()))
    }
}

/// The org's change journal with what fell out of the retention window (at the org's clock)
/// dropped, as the bus holds it when a client reads; unavailable when the org records no
/// change events.
fn trimmed_journal(org: &mut Org) -> Result<&mut ChangeJournal, Status> {
    let now = org.clock_ms;
    let journal = org
        .changes
        .as_mut()
        .ok_or_else(|| Status::unavailable("change events are off in this org"))?;
    journal.trim(now);
    Ok(journal)
}

type SubscribeStream = Pin<Box<dyn Stream<Item = Result<FetchResponse, Status>> + Send>>;

impl PubSub for Service {
    type SubscribeStream = SubscribeStream;

    async fn get_topic(
        &self,
        request: Request<TopicRequest>,
    ) -> Result<Response<TopicInfo>, Status> {
        self.authorize(&request)?;
        let topic_name = request.into_inner().topic_name;
        let (_, schema) = self.topic(&topic_name)?;
        Ok(Response::new(TopicInfo {
            topic_name,
            tenant_guid: super::oauth::ORG_ID.to_string(),
            can_publish: false,
            can_subscribe: true,
            schema_id: schema.id.clone(),
            rpc_id: rpc_id(),
        }))
    }

    async fn get_schema(
        &self,
        request: Request<SchemaRequest>,
    ) -> Result<Response<SchemaInfo>, Status> {
        self.authorize(&request)?;
        let schema_id = request.into_inner().schema_id;
        let schema = self
            .schemas
            .by_id
            .get(&schema_id)
            .ok_or_else(|| Status::not_found(format!("no schema with id {schema_id:?}")))?;
        Ok(Response::new(SchemaInfo {
            schema_json: schema.json.clone(),
            schema_id,
            rpc_id: rpc_id(),
        }))
    }

    async fn subscribe(
        &self,
        request: Request<Streaming<FetchRequest>>,
    ) -> Result<Response<SubscribeStream>, Status> {
        self.authorize(&request)?;
        let mut inbound = request.into_inner();
        let first = inbound.message().await?.ok_or_else(|| {
            Status::invalid_argument("the stream ended before its first FetchRequest")
        })?;
        let (object, schema) = self.topic(&first.topic_name)?;
        let (start, watch) = {
            let mut org = self.shared.org();
            let journal = trimmed_journal(&mut org)?;
            let start = match ReplayPreset::try_from(first.replay_preset) {
                Ok(ReplayPreset::Latest) => journal.latest(),
                Ok(ReplayPreset::Earliest) => journal.earliest(),
                Ok(ReplayPreset::Custom) => {
                    let bytes: [u8; 8] = first.replay_id.as_slice().try_into().map_err(|_| {
                        with_code(
                            Status::invalid_argument("The Replay ID is not valid"),
                            sfsync_pubsub::ERROR_REPLAY_ID_CORRUPTED,
                        )
                    })?;
                    let replay = u64::from_be_bytes(bytes);
                    if replay > journal.latest() {
                        return Err(with_code(
                            Status::invalid_argument("The Replay ID is not valid"),
                            sfsync_pubsub::ERROR_REPLAY_ID_CORRUPTED,
                        ));
                    }
                    if replay < journal.earliest() {
                        return Err(with_code(
                            Status::invalid_argument(format!(
                                "The Replay ID validation failed: it is older than the retention window; rpcId: {}",
                                rpc_id()
                            )),
                            sfsync_pubsub::ERROR_REPLAY_ID_VALIDATION_FAILED,
                        ));
                    }
                    replay
                }
                Err(_) => return Err(Status::invalid_argument("unknown replay_preset")),
            };
            (start, journal.watch())
        };
        let (tx, rx) = mpsc::channel(16);
        let session = Session {
            service: Service {
                shared: self.shared.clone(),
                schemas: self.schemas.clone(),
                options: self.options.clone(),
            },
            topic: first.topic_name.clone(),
            object,
            schema,
            position: start,
            credits: i64::from(first.num_requested.max(0)),
        };
        tokio::spawn(session.run(inbound, watch, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One open subscription.
struct Session {
    service: Service,
    topic: String,
    object: String,
    schema: Arc<EventSchema>,
    /// Everything of this topic up to here has been sent.
    position: u64,
    /// Events the client has asked for and not yet received.
    credits: i64,
}

type Out = mpsc::Sender<Result<FetchResponse, Status>>;

impl Session {
    async fn run(
        mut self,
        mut inbound: Streaming<FetchRequest>,
        mut watch: tokio::sync::watch::Receiver<u64>,
        out: Out,
    ) {
        loop {
            if self.deliver(&out).await.is_err() {
                return;
            }
            tokio::select! {
                request = inbound.message() => match request {
                    Ok(Some(r)) => {
                        if !r.topic_name.is_empty() && r.topic_name != self.topic {
                            let _ = out.send(Err(Status::invalid_argument(format!(
                                "a FetchRequest named {:?}, but this subscription is to {}", r.topic_name, self.topic
                            )))).await;
                            return;
                        }
                        self.credits += i64::from(r.num_requested.max(0));
                    }
                    // The client closed its half, or the connection is gone.
                    Ok(None) | Err(_) => return,
                },
                changed = watch.changed() => {
                    // The org (and its journal) was replaced or dropped.
                    if changed.is_err() {
                        let _ = out.send(Err(Status::unavailable("the event bus restarted"))).await;
                        return;
                    }
                }
                () = tokio::time::sleep(self.service.options.keepalive) => {
                    let keepalive = FetchResponse {
                        events: Vec::new(),
                        latest_replay_id: replay_bytes(self.position),
                        rpc_id: rpc_id(),
                        pending_num_requested: i32::try_from(self.credits).unwrap_or(i32::MAX),
                    };
                    if out.send(Ok(keepalive)).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Sends what the client asked for and the bus has. Err when the client is gone.
    async fn deliver(&mut self, out: &Out) -> Result<(), ()> {
        while self.credits > 0 {
            let max = usize::try_from(self.credits)
                .unwrap_or(usize::MAX)
                .min(self.service.options.max_events_per_response.max(1));
            let (batch, latest) = match self.service.read(&self.object, self.position, max) {
                Ok(read) => read,
                Err(status) => {
                    let _ = out.send(Err(status)).await;
                    return Err(());
                }
            };
            let Some(last) = batch.last().map(|e| e.replay) else {
                // Nothing of this topic up to `latest`: the subscription is there.
                self.position = self.position.max(latest);
                return Ok(());
            };
            let mut events = Vec::with_capacity(batch.len());
            for event in &batch {
                let payload = match self.schema.encode(event, |n| self.schema.position(n)) {
                    Ok(p) => p,
                    Err(status) => {
                        let _ = out.send(Err(status)).await;
                        return Err(());
                    }
                };
                events.push(ConsumerEvent {
                    event: Some(ProducerEvent {
                        id: uuid::Uuid::new_v4().to_string(),
                        schema_id: self.schema.id.clone(),
                        payload,
                        headers: Vec::new(),
                    }),
                    replay_id: replay_bytes(event.replay),
                });
            }
            self.position = last;
            self.credits -= events.len() as i64;
            let response = FetchResponse {
                events,
                latest_replay_id: replay_bytes(last),
                rpc_id: rpc_id(),
                pending_num_requested: i32::try_from(self.credits).unwrap_or(i32::MAX),
            };
            out.send(Ok(response)).await.map_err(|_| ())?;
        }
        Ok(())
    }
}
