//! Vendor behaviour the test servers of several crates share, written once from the
//! vendors' documents: a test server (an axum app in `sfsync-e2e`, the recording server of
//! `sfsync-destinations`' tests) parses the request and checks the credentials; what the
//! vendor then does with each operation lives here.

pub mod customerio_people;

pub use customerio_people::{PROCESSING_LAG, People};
