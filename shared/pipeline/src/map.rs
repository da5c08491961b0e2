//! The map stage: a records message → calls, routed to the destinations whose `syncs`
//! include the sync, packed into one calls message stream per destination.

use std::collections::BTreeMap;

use sfsync_mapping::{Config, map_record};

use crate::message::{MessageError, Packer, RecordsMessage};
use crate::report::RunCounts;

#[derive(Debug, thiserror::Error)]
pub enum MapError {
    #[error("message names sync {0:?}, which the config does not have")]
    UnknownSync(String),
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// What one records message became.
#[derive(Debug, Default)]
pub struct MapOutput {
    /// Calls-message bodies per destination name.
    pub bodies: BTreeMap<String, Vec<String>>,
    pub counts: RunCounts,
    /// One line per skipped record: its Id and reason (for logs and the CLI).
    pub skipped: Vec<String>,
}

pub fn map_message(
    config: &Config,
    message: RecordsMessage,
    max_body_bytes: usize,
    compress: bool,
) -> Result<MapOutput, MapError> {
    let sync = config
        .sync(&message.sync)
        .ok_or_else(|| MapError::UnknownSync(message.sync.clone()))?;
    let mut packers: Vec<(String, Packer)> = config
        .destinations
        .iter()
        .filter(|d| d.routes(&sync.name))
        .map(|d| {
            (
                d.name.clone(),
                Packer::new(
                    Packer::calls_prefix(&message.run_id, &d.name, 0),
                    max_body_bytes,
                    compress,
                ),
            )
        })
        .collect();
    let mut out = MapOutput::default();
    for record in message.records {
        match map_record(sync, record) {
            Ok(call) => {
                out.counts.mapped += 1;
                for (_, packer) in packers.iter_mut() {
                    packer.push(&call)?;
                }
            }
            Err(skip) => {
                if skip.reason.is_deliberate() {
                    out.counts.skipped_deliberate += 1;
                } else {
                    out.counts.skipped += 1;
                }
                *out.counts
                    .skip_reasons
                    .entry(skip.reason.code().to_string())
                    .or_default() += 1;
                out.skipped.push(skip.to_string());
            }
        }
    }
    for (name, packer) in packers {
        let bodies: Vec<String> = packer.finish()?.into_iter().map(|b| b.body).collect();
        if !bodies.is_empty() {
            out.bodies.insert(name, bodies);
        }
    }
    Ok(out)
}
