//! Segment HTTP Tracking API: `POST https://api.segment.io/v1/batch` (EU workspaces:
//! `https://events.eu1.segmentapis.com/v1/batch`), Basic auth `WRITE_KEY:`.
//!
//! Field names from Segment's "HTTP API Source" reference
//! (segment.com/docs/connections/sources/catalog/libraries/server/http-api, section Batch)
//! and the Segment Spec (segment.com/docs/connections/spec). The wire form is shared with
//! Customer.io and RudderStack; see `segment_spec`.
//!
//! - Segment silently drops a call with neither userId nor anonymousId: an object without a
//!   related user carries the mapping's stable anonymousId (`sfsync_mapping::anonymous_object_id`).
//! - Deletions become the semantic track events "User Deleted", "Object Deleted" (object id
//!   also in `groupId` and `context.groupId`) and "Relationship Deleted" (`context.groupId`),
//!   where Segment's own Customer.io destination reads them (see `segment_spec`) (Segment's own deletion is the Public API's regulations, which
//!   needs a workspace token, not a write key).
//! - Limits: ≤ 2500 calls, 500 KB per batch, 32 KB per call. gzip bodies are accepted
//!   (`Content-Encoding: gzip`), on by default.
//! - 400 only for bad JSON or oversize; 429 carries `Retry-After` / `X-RateLimit-Reset`.

use sfsync_mapping::config::{SegmentSettings, UsEuRegion};

use crate::engine::RouteSpec;
use crate::segment_spec::SegmentSpec;
use crate::wire::{self, BuildContext};
use crate::{BuildError, Limits};

pub(crate) const LIMITS: Limits = Limits {
    max_calls: 2500,
    max_batch_bytes: 500_000,
    max_call_bytes: 32 * 1024,
};

pub(crate) fn build(
    ctx: &BuildContext<'_>,
    settings: &SegmentSettings,
) -> Result<SegmentSpec, BuildError> {
    let write_key = ctx.non_empty("write_key", &settings.write_key)?;
    let base = ctx.base_url(match settings.region {
        UsEuRegion::Us => "https://api.segment.io",
        UsEuRegion::Eu => "https://events.eu1.segmentapis.com",
    })?;
    Ok(SegmentSpec {
        url: wire::join_url(&base, "/v1/batch"),
        auth: wire::basic_auth(write_key, ""),
        route: [RouteSpec {
            name: "Segment /v1/batch",
            limits: LIMITS,
            separator: b",",
            gzip: true,
            max_units: None,
            min_interval: None,
        }],
        extra_headers: Default::default(),
    })
}
