//! Property: keyset pagination on (SystemModstamp, Id) neither loses nor repeats a row, for
//! any distribution of timestamps (few distinct values, so ties of every size straddle page
//! boundaries), any page size, and fresh extractions restarted from any page's `last` cursor
//! the way production resumes a run that stopped part-way (new client, stored checkpoint,
//! new window end).

use std::collections::HashMap;

use chrono::Duration as ChronoDuration;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::FileFailurePersistence;
use serde_json::json;
use sfsync_mapping::config::ExtractApi;
use sfsync_salesforce::Cursor;
use sfsync_simulator::Org;

use crate::common::*;

/// One generated case: distinct SystemModstamps (milliseconds before the org's now), which of
/// them each row gets, the page size, and after which pages to restart from the cursor.
#[derive(Debug, Clone)]
struct Case {
    offsets_ms: Vec<i64>,
    rows: Vec<Index>,
    page_size: u32,
    restart_after: Vec<bool>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(0i64..600_000, 1..=5),
        proptest::collection::vec(any::<Index>(), 1..=3000),
        200u32..=2000,
        proptest::collection::vec(proptest::bool::weighted(0.4), 0..16),
    )
        .prop_map(|(offsets_ms, rows, page_size, restart_after)| Case {
            offsets_ms,
            rows,
            page_size,
            restart_after,
        })
}

async fn run(case: Case) -> Result<(), TestCaseError> {
    let mut org = Org::empty();
    let clock = org.now();
    for (i, pick) in case.rows.iter().enumerate() {
        let offset = *pick.get(&case.offsets_ms);
        org.insert_late(
            "Contact",
            fields(json!({"LastName": format!("Row {i}")})),
            clock - ChronoDuration::milliseconds(offset),
        );
    }
    let sim = start(org).await;
    let mut config = config(&sim.url());
    config.page_size = case.page_size;
    let mut client = client_with(config.clone());
    let plan = client
        .plan(&contacts_sync(&["LastName"]))
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut until = now(&sim).await;

    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut order: Vec<Cursor> = Vec::new();
    let mut extraction = client.extract(&plan, window(None, until, ExtractApi::Rest));
    let (mut pages, mut restarts) = (0usize, 0usize);
    loop {
        let page = extraction
            .next_page()
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let Some(page) = page else { break };
        prop_assert!(!page.records.is_empty(), "an empty page");
        prop_assert!(page.records.len() <= case.page_size as usize);
        for record in &page.records {
            *seen.entry(id_of(&record.to_value())).or_default() += 1;
            order.push(Cursor::of_record(record).map_err(|e| TestCaseError::fail(e.to_string()))?);
        }
        let last = page.last.clone();
        prop_assert_eq!(last.as_ref(), order.last(), "page.last is its last record");
        if case.restart_after.get(pages).copied().unwrap_or(false) {
            // A new run resumes as production resumes a run that stopped inside its window
            // (`resume_after` in shared/pipeline/src/extract.rs): a new process (client),
            // the checkpoint read back from its stored JSON, exactly after its cursor, up to
            // the new run's own start; a fresh query, no locator.
            restarts += 1;
            let stored = serde_json::to_string(&last)
                .map_err(|e| TestCaseError::fail(format!("checkpoint: {e}")))?;
            let checkpoint: Option<Cursor> = serde_json::from_str(&stored)
                .map_err(|e| TestCaseError::fail(format!("checkpoint {stored}: {e}")))?;
            prop_assert_eq!(&checkpoint, &last, "the stored checkpoint is the cursor");
            client = client_with(config.clone());
            until = now(&sim).await;
            extraction = client.extract(&plan, window(checkpoint, until, ExtractApi::Rest));
        }
        pages += 1;
        prop_assert!(pages <= case.rows.len() + 1, "no progress");
    }
    sim.shutdown().await;

    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    prop_assert!(
        twice.is_empty(),
        "{} rows repeated after {restarts} restarts, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    prop_assert_eq!(
        seen.len(),
        case.rows.len(),
        "rows lost ({} pages, {} restarts)",
        pages,
        restarts
    );
    for pair in order.windows(2) {
        prop_assert!(
            pair[0] < pair[1],
            "out of order: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    Ok(())
}

/// Where failing cases are saved, next to this file, and replayed first on every run
/// (checked in: a failure found once is tried again forever).
const REGRESSIONS: &str = "proptest-regressions";

#[test]
fn the_saved_regressions_are_where_proptest_reads_them() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/simulator/keyset_properties")
        .with_extension(REGRESSIONS);
    assert!(path.is_file(), "{} is missing", path.display());
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Enough cases for ties of every size to straddle page ends and restarts.
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(REGRESSIONS))),
        max_shrink_iters: 64,
        ..ProptestConfig::default()
    })]

    #[test]
    fn keyset_pages_lose_and_repeat_nothing_across_ties_and_restarts(case in case()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        runtime.block_on(run(case))?;
    }
}
