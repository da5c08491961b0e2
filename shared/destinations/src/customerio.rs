//! Customer.io Data Pipelines API: `POST https://cdp.customer.io/v1/batch` (EU
//! `https://cdp-eu.customer.io/v1/batch`), Basic auth `API_KEY:`.
//!
//! Field names from Customer.io's "Data Pipelines API" reference
//! (docs.customer.io/api/cdp/ — batch, identify, track, group) and its source spec pages
//! (docs.customer.io/cdp/sources/source-spec/group-spec, "semantic events": User Deleted,
//! Object Deleted, Relationship Deleted). The wire form is Segment's; see `segment_spec`.
//!
//! - Every request carries `X-Strict-Mode: 1`. Without it the API is permissive: it logs a
//!   call that fails validation and still answers 200, so the call is lost without a trace.
//!   With it, an invalid call makes the whole batch answer 400 (and a bad key 401)
//!   (docs.customer.io/integrations/api/cdp/tag/default/batch/, header `X-Strict-Mode`). The
//!   engine then bisects the batch: the valid calls are delivered, the culprit is dead with
//!   the API's message.
//! - Objects and relationships are `group` calls: `traits.object_type_id` plus the object's
//!   attributes; relationship attributes in `traits.relationshipAttributes`; the person is
//!   `userId`. Batch items need a `userId` or an `anonymousId` (the batch schema in
//!   `pipelines.json`): an object without a related user carries the mapping's stable
//!   anonymousId (`sfsync_mapping::anonymous_object_id`).
//! - Deletions: "User Deleted", "Object Deleted", "Relationship Deleted", with
//!   `properties: {objectId, objectTypeId}` (see `segment_spec` for the exact shape).
//! - Limits: 32 KB per call, 500 KB per batch. Customer.io answers an oversize request with
//!   200 and drops it, so sizes are enforced before sending. No call-count limit is
//!   documented; sfsync caps batches at 10,000 calls.
//! - gzip: not documented for this API, so off unless the config sets `gzip = true`.

use reqwest::header::{HeaderMap, HeaderValue};
use sfsync_mapping::config::{CustomerioSettings, UsEuRegion};

use crate::engine::RouteSpec;
use crate::segment_spec::SegmentSpec;
use crate::wire::{self, BuildContext};
use crate::{BuildError, Limits};

pub(crate) const LIMITS: Limits = Limits {
    max_calls: 10_000,
    max_batch_bytes: 500_000,
    max_call_bytes: 32 * 1024,
};

pub(crate) fn build(
    ctx: &BuildContext<'_>,
    settings: &CustomerioSettings,
) -> Result<SegmentSpec, BuildError> {
    let api_key = ctx.non_empty("api_key", &settings.api_key)?;
    let base = ctx.base_url(match settings.region {
        UsEuRegion::Us => "https://cdp.customer.io",
        UsEuRegion::Eu => "https://cdp-eu.customer.io",
    })?;
    Ok(SegmentSpec {
        url: wire::join_url(&base, "/v1/batch"),
        auth: wire::basic_auth(api_key, ""),
        route: [RouteSpec {
            name: "Customer.io /v1/batch",
            limits: LIMITS,
            separator: b",",
            gzip: ctx.config.gzip == Some(true),
            max_units: None,
            min_interval: None,
        }],
        extra_headers: strict_mode(),
    })
}

/// `X-Strict-Mode: 1`: refuse invalid calls with 400 instead of dropping them behind a 200.
fn strict_mode() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-strict-mode", HeaderValue::from_static("1"));
    headers
}
