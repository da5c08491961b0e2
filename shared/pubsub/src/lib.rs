//! The Salesforce Pub/Sub API (gRPC, package `eventbus.v1`) as sfsync speaks it, in both
//! directions: the client the `stream` stage subscribes with, and the server routing the
//! simulator answers with. Plus the Change Data Capture payload rules shared by both ends
//! (the `ChangeEventHeader`, bitmap field lists, Avro decoding).
//!
//! Source of truth: `pubsub_api.proto` in github.com/forcedotcom/pub-sub-api (Pub/Sub API
//! version 1). The messages are written by hand as prost derives so that building needs no
//! `protoc`; field numbers and types follow that file exactly. Only the RPCs sfsync uses are
//! routed (`Subscribe`, `GetSchema`, `GetTopic`); the others answer `UNIMPLEMENTED`.

pub mod cdc;
pub mod client;
pub mod proto;
pub mod server;

pub use cdc::{CdcError, ChangeEvent, ChangeEventHeader, ChangeType};
pub use client::{Auth, ClientError, PubSubClient, error_code};
pub use proto::{
    ConsumerEvent, EventHeader, FetchRequest, FetchResponse, ProducerEvent, ReplayPreset,
    SchemaInfo, SchemaRequest, TopicInfo, TopicRequest,
};
pub use server::{PubSub, PubSubServer};

/// The production endpoint (gRPC over TLS). Source: Pub/Sub API developer guide, "Pub/Sub API
/// Endpoint" — `api.pubsub.salesforce.com:7443`.
pub const SALESFORCE_ENDPOINT: &str = "https://api.pubsub.salesforce.com:7443";

/// Metadata keys every RPC must carry (comment on `service PubSub` in `pubsub_api.proto`).
pub const HEADER_ACCESS_TOKEN: &str = "accesstoken";
pub const HEADER_INSTANCE_URL: &str = "instanceurl";
pub const HEADER_TENANT_ID: &str = "tenantid";

/// The trailer in which the Pub/Sub API names the cause of a failed call (Pub/Sub API
/// developer guide, "Handle Errors").
pub const ERROR_CODE_TRAILER: &str = "error-code";
/// A CUSTOM replay id the server cannot serve (older than the retention window, or from
/// another org). The Java sample of forcedotcom/pub-sub-api retries with EARLIEST on it.
pub const ERROR_REPLAY_ID_VALIDATION_FAILED: &str =
    "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.validation.failed";
/// A replay id that is not one the server ever handed out.
pub const ERROR_REPLAY_ID_CORRUPTED: &str =
    "sfdc.platform.eventbus.grpc.subscription.fetch.replayid.corrupted";
/// Missing or invalid `accesstoken` / `instanceurl` / `tenantid`.
pub const ERROR_AUTH: &str = "sfdc.platform.eventbus.grpc.service.auth.error";

/// The change-event channel of an object: `/data/ContactChangeEvent` for a standard object,
/// `/data/Project__ChangeEvent` for the custom `Project__c` (Change Data Capture developer
/// guide, "Subscription Channels").
pub fn change_event_topic(object: &str) -> String {
    match object.strip_suffix("__c") {
        Some(base) => format!("/data/{base}__ChangeEvent"),
        None => format!("/data/{object}ChangeEvent"),
    }
}

/// The object a change-event channel carries, the inverse of [`change_event_topic`].
pub fn object_of_topic(topic: &str) -> Option<String> {
    let name = topic.strip_prefix("/data/")?;
    if let Some(base) = name.strip_suffix("__ChangeEvent") {
        return (!base.is_empty()).then(|| format!("{base}__c"));
    }
    let base = name.strip_suffix("ChangeEvent")?;
    (!base.is_empty()).then(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_standard_and_custom_objects_as_salesforce_does() {
        assert_eq!(change_event_topic("Contact"), "/data/ContactChangeEvent");
        assert_eq!(
            change_event_topic("Project__c"),
            "/data/Project__ChangeEvent"
        );
        assert_eq!(
            object_of_topic("/data/ContactChangeEvent").as_deref(),
            Some("Contact")
        );
        assert_eq!(
            object_of_topic("/data/Project__ChangeEvent").as_deref(),
            Some("Project__c")
        );
        assert_eq!(object_of_topic("/data/ChangeEvent"), None);
        assert_eq!(object_of_topic("/event/Foo__e"), None);
    }
}
