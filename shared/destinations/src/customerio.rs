//! Customer.io Data Pipelines API: `POST https://cdp.customer.io/v1/batch` (EU
//! `https://cdp-eu.customer.io/v1/batch`), Basic auth `API_KEY:`.
//!
//! Field names from Customer.io's "Data Pipelines API" reference
//! (docs.customer.io/api/cdp/ — batch, identify, track, group) and its source spec pages
//! (docs.customer.io/cdp/sources/source-spec/group-spec, "semantic events": User Deleted,
//! Object Deleted, Relationship Deleted). The wire form is Segment's; see `segment_spec`.
//!
//! - Objects and relationships are `group` calls: `traits.object_type_id` plus the object's
//!   attributes; relationship attributes in `traits.relationshipAttributes`; the person is
//!   `userId`. A group call without a user only updates the object, as Customer.io
//!   documents, so no anonymousId is invented here.
//! - Deletions: "User Deleted", "Object Deleted" (anonymousId `sfsync-object-<groupId>`),
//!   "Relationship Deleted", with `properties: {objectId, objectTypeId}`.
//! - Limits: 32 KB per call, 500 KB per batch. Customer.io answers an oversize request with
//!   200 and drops it, so sizes are enforced before sending. No call-count limit is
//!   documented; sfsync caps batches at 10,000 calls.
//! - gzip: not documented for this API, so off unless the config sets `gzip = true`.

use crate::engine::RouteSpec;
use crate::segment_spec::SegmentSpec;
use crate::wire::{self, BuildContext};
use crate::{BuildError, Limits};

pub(crate) const LIMITS: Limits = Limits {
    max_calls: 10_000,
    max_batch_bytes: 500_000,
    max_call_bytes: 32 * 1024,
};

pub(crate) fn build(ctx: &BuildContext<'_>) -> Result<SegmentSpec, BuildError> {
    let api_key = ctx.required("api_key")?;
    let base = ctx.base_url(&[
        ("us", "https://cdp.customer.io"),
        ("eu", "https://cdp-eu.customer.io"),
    ])?;
    Ok(SegmentSpec {
        url: wire::join_url(&base, "/v1/batch"),
        auth: wire::basic_auth(api_key, ""),
        route: [RouteSpec {
            name: "Customer.io /v1/batch",
            limits: LIMITS,
            separator: b",",
            gzip: ctx.config.gzip == Some(true),
        }],
        anonymous_objects: false,
    })
}
