//! End-to-end tests of the simulator over real HTTP.

mod auth;
mod bulk;
mod common;
mod deleted;
mod describe;
mod faults;
mod fidelity;
mod pubsub;
mod query;
