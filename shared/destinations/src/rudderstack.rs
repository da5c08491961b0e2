//! RudderStack HTTP API: `POST <data plane URL>/v1/batch`, Basic auth `WRITE_KEY:`.
//!
//! Field names from RudderStack's "HTTP API" reference
//! (rudderstack.com/docs/api/http-api/, section Batch) and its event spec
//! (rudderstack.com/docs/event-spec/standard-events/), which follow Segment's; the wire
//! form is shared with Segment and Customer.io (see `segment_spec`).
//!
//! - `endpoint` is required: it is the data plane URL; `/v1/batch` is appended.
//! - RudderStack silently drops a call with neither userId nor anonymousId: an object without a
//!   related user carries the mapping's stable anonymousId (`sfsync_mapping::anonymous_object_id`).
//! - Deletions become the semantic track events "User Deleted", "Object Deleted" (object id
//!   also in `groupId` and `context.groupId`) and "Relationship Deleted" (`context.groupId`),
//!   where Segment's own Customer.io destination reads them (see `segment_spec`).
//! - Limits: the data plane takes 4 MB per request by default (`Gateway.maxReqSizeInKB`);
//!   sfsync keeps Segment's 32 KB per call and caps batches at 10,000 calls. gzip bodies are
//!   accepted by rudder-server 1.4 and later, on by default (`gzip = false` for older ones).

use sfsync_mapping::config::RudderstackSettings;

use crate::engine::RouteSpec;
use crate::segment_spec::SegmentSpec;
use crate::wire::{self, BuildContext};
use crate::{BuildError, Limits};

pub(crate) const LIMITS: Limits = Limits {
    max_calls: 10_000,
    max_batch_bytes: 4_000_000,
    max_call_bytes: 32 * 1024,
};

pub(crate) fn build(
    ctx: &BuildContext<'_>,
    settings: &RudderstackSettings,
) -> Result<SegmentSpec, BuildError> {
    let write_key = ctx.non_empty("write_key", &settings.write_key)?;
    // The data plane URL has no default.
    let base = ctx.required_endpoint()?;
    Ok(SegmentSpec {
        url: wire::join_url(&base, "/v1/batch"),
        auth: wire::basic_auth(write_key, ""),
        route: [RouteSpec {
            name: "RudderStack /v1/batch",
            limits: LIMITS,
            separator: b",",
            gzip: true,
            max_units: None,
            min_interval: None,
        }],
        extra_headers: Default::default(),
    })
}
