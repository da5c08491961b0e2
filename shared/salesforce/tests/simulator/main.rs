//! sfsync-salesforce against the Salesforce simulator, over real HTTP.

mod auth;
mod bulk;
mod common;
mod deletes;
mod describe;
mod extract;
mod limits;
mod secrets;
