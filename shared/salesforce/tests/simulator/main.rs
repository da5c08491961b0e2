//! sfsync-salesforce against the Salesforce simulator, over real HTTP.

mod auth;
mod bulk;
mod common;
mod deletes;
mod describe;
mod extract;
mod keyset_properties;
mod limits;
mod secrets;
