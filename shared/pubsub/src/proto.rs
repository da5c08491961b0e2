//! The messages of `eventbus.v1` (`pubsub_api.proto`, forcedotcom/pub-sub-api), as prost
//! derives. Field names, numbers and wire types are the proto file's; only the messages of the
//! RPCs sfsync uses are here.

/// `TopicInfo`, returned by `GetTopic`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopicInfo {
    #[prost(string, tag = "1")]
    pub topic_name: String,
    /// Tenant/org GUID.
    #[prost(string, tag = "2")]
    pub tenant_guid: String,
    #[prost(bool, tag = "3")]
    pub can_publish: bool,
    #[prost(bool, tag = "4")]
    pub can_subscribe: bool,
    /// Id of the topic's current schema.
    #[prost(string, tag = "5")]
    pub schema_id: String,
    #[prost(string, tag = "6")]
    pub rpc_id: String,
}

/// `TopicRequest`, the argument of `GetTopic`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TopicRequest {
    #[prost(string, tag = "1")]
    pub topic_name: String,
}

/// `EventHeader` (reserved for future use by Salesforce).
#[derive(Clone, PartialEq, prost::Message)]
pub struct EventHeader {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `ProducerEvent`: the event itself, its payload Avro-encoded with the schema `schema_id`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProducerEvent {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub schema_id: String,
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    #[prost(message, repeated, tag = "4")]
    pub headers: Vec<EventHeader>,
}

/// `ConsumerEvent`: an event as a subscriber receives it, with its replay id (opaque bytes:
/// store them as they are).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConsumerEvent {
    #[prost(message, optional, tag = "1")]
    pub event: Option<ProducerEvent>,
    #[prost(bytes = "vec", tag = "2")]
    pub replay_id: Vec<u8>,
}

/// `ReplayPreset`: where a subscription starts. Unset means LATEST (the tip).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ReplayPreset {
    Latest = 0,
    Earliest = 1,
    /// After the `replay_id` of the first `FetchRequest`.
    Custom = 2,
}

/// `FetchRequest`: the first one opens a subscription (topic, replay start); every one asks
/// for `num_requested` more events — the subscriber's flow control.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FetchRequest {
    #[prost(string, tag = "1")]
    pub topic_name: String,
    #[prost(enumeration = "ReplayPreset", tag = "2")]
    pub replay_preset: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub replay_id: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub num_requested: i32,
    /// For internal Salesforce use only.
    #[prost(string, tag = "5")]
    pub auth_refresh: String,
}

/// `FetchResponse`: a batch of events, or an empty keepalive carrying the latest replay id.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FetchResponse {
    #[prost(message, repeated, tag = "1")]
    pub events: Vec<ConsumerEvent>,
    #[prost(bytes = "vec", tag = "2")]
    pub latest_replay_id: Vec<u8>,
    #[prost(string, tag = "3")]
    pub rpc_id: String,
    /// Events still owed to the client from its requests so far.
    #[prost(int32, tag = "4")]
    pub pending_num_requested: i32,
}

/// `SchemaRequest`, the argument of `GetSchema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaRequest {
    #[prost(string, tag = "1")]
    pub schema_id: String,
}

/// `SchemaInfo`: the Avro schema (JSON) of a schema id.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaInfo {
    #[prost(string, tag = "1")]
    pub schema_json: String,
    #[prost(string, tag = "2")]
    pub schema_id: String,
    #[prost(string, tag = "3")]
    pub rpc_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Bytes written by hand from the proto's field numbers and wire types: a mistake in a tag
    /// or type would decode differently (or not at all) against the real service.
    #[test]
    fn fetch_request_has_the_proto_field_numbers() {
        let req = FetchRequest {
            topic_name: "/data/ContactChangeEvent".into(),
            replay_preset: ReplayPreset::Custom as i32,
            replay_id: vec![0, 1],
            num_requested: 100,
            auth_refresh: String::new(),
        };
        let mut expected = vec![0x0a, 24];
        expected.extend_from_slice(b"/data/ContactChangeEvent");
        expected.extend_from_slice(&[0x10, 2, 0x1a, 2, 0, 1, 0x20, 100]);
        assert_eq!(req.encode_to_vec(), expected);
        assert_eq!(FetchRequest::decode(expected.as_slice()).ok(), Some(req));
    }

    #[test]
    fn consumer_event_nests_the_producer_event_and_carries_replay_bytes() {
        let event = ConsumerEvent {
            event: Some(ProducerEvent {
                id: "e".into(),
                schema_id: "s".into(),
                payload: vec![7],
                headers: vec![],
            }),
            replay_id: vec![9, 9],
        };
        let bytes = event.encode_to_vec();
        // field 1 (message, len 9) then field 2 (bytes, len 2)
        assert_eq!(
            bytes,
            vec![
                0x0a, 9, 0x0a, 1, b'e', 0x12, 1, b's', 0x1a, 1, 7, 0x12, 2, 9, 9
            ]
        );
        let response = FetchResponse {
            events: vec![event.clone()],
            latest_replay_id: vec![9, 9],
            rpc_id: String::new(),
            pending_num_requested: 3,
        };
        let back = FetchResponse::decode(response.encode_to_vec().as_slice()).ok();
        assert_eq!(
            back.map(|r| (r.events, r.pending_num_requested)),
            Some((vec![event], 3))
        );
    }
}
