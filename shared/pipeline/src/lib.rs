//! The three stages of sfsync — extract, map, deliver — as library functions that the Lambda
//! handlers and the local `sfsync` command both call. Only the edges differ, behind traits:
//!
//! | edge | AWS | local |
//! |---|---|---|
//! | queue | SQS (`queue::SqsQueue`) | the next stage, inline (`local::InlineQueue`) |
//! | checkpoints, leases, run reports | DynamoDB (`state::dynamo`) | files (`state::file`) |
//! | secrets | Secrets Manager (`aws::load_secret`) | a JSON file |

pub mod aws;
pub mod backoff;
pub mod carrier;
pub mod dead_letter;
pub mod deletes;
pub mod deliver;
pub mod deliver_sqs;
pub mod extract;
pub mod extract_syncs;
pub mod lambda;
pub mod ledger;
pub mod local;
pub mod map;
pub mod message;
pub mod metrics;
pub mod queue;
pub mod redrive;
pub mod report;
pub mod state;
pub mod token_store;
