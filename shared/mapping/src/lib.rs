//! sfsync's mapping core: the sync configuration and the pure translation of Salesforce
//! records into Segment-spec calls.
//!
//! This crate does no I/O: no async runtime, no AWS, no HTTP. Every other crate of sfsync
//! builds on it, and it is the one to read first.

pub mod call;
pub mod config;
pub mod mapper;
pub mod object;
pub mod record;
pub mod secrets;
pub mod suggest;
pub mod time;
pub mod version;

pub use call::{Call, CallType, Entity, MergeCause, Source};
pub use config::{
    Config, ConfigError, ConfigProblem, DestinationConfig, DestinationKind, DestinationSettings,
    MixpanelIdMerge, SyncConfig, SyncKind,
};
pub use mapper::{
    Skip, SkipReason, anonymous_object_id, map_raw, map_record, merge_message_id, message_id,
};
pub use object::{JsonObject, ObjectBuilder};
pub use record::Record;
