//! Calls that need another call accepted first, whatever order they arrive in.
//!
//! Some APIs act on a call only when something it names already exists, and say nothing
//! when it does not: Customer.io's Track API v2 answers 200 to a person `merge` whose
//! `primary` does not exist and does nothing. sfsync cannot promise the order in which
//! calls reach a destination: in AWS they travel through SQS, which keeps no order, and
//! several deliveries run at once, so the surviving person's own `identify` may come in
//! another delivery, later. A protocol therefore names, per call, a prerequisite
//! (`Protocol::prerequisite`) that makes the call safe on its own — for a Track merge, an
//! identify of the survivor carrying only its id — and delivery goes in two rounds:
//!
//! 1. every call without a prerequisite, and each prerequisite once, where its first
//!    dependant stood, in input order (as the engine always sends);
//! 2. `Protocol::prerequisite_settle` after the first round, the dependants whose
//!    prerequisite was accepted, in input order, in requests of their own.
//!
//! No API's order inside one request is relied on. A dependant whose prerequisite was not
//! accepted is not sent: it takes its prerequisite's fate (retry later, paused, or dead)
//! with a reason that says so. A prerequisite's own outcome is not reported (it is not one
//! of the input calls); it is sent again with its dependant on a retry, which is harmless
//! by design. Deliveries without any dependant take the engine's path unchanged.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sfsync_mapping::Call;

use crate::engine::{HttpDelivery, MIN_ATTEMPT};
use crate::{CallOutcome, DeliveryReport, Outcome, Plan};

/// The calls of one delivery, split into the two rounds.
struct Rounds {
    /// Round 1: (index in the input, or `None` for a prerequisite; the call).
    first: Vec<(Option<usize>, Call)>,
    /// Round 2: (index in the input, the call, index in `first` of its prerequisite).
    second: Vec<(usize, Call, usize)>,
}

impl Rounds {
    /// `Err(calls)` when no call has a prerequisite.
    fn split(http: &HttpDelivery, calls: Vec<Call>) -> Result<Rounds, Vec<Call>> {
        let prerequisites: Vec<Option<Call>> =
            calls.iter().map(|call| http.prerequisite(call)).collect();
        if prerequisites.iter().all(Option::is_none) {
            return Err(calls);
        }
        let mut first = Vec::with_capacity(calls.len() + 1);
        let mut second = Vec::new();
        // A prerequisite shared by several dependants (two Leads converted into one
        // Contact) is sent once: prerequisites are keyed by their deterministic messageId.
        let mut placed: HashMap<String, usize> = HashMap::new();
        for (i, (call, prerequisite)) in calls.into_iter().zip(prerequisites).enumerate() {
            match prerequisite {
                None => first.push((Some(i), call)),
                Some(prerequisite) => {
                    let at = *placed
                        .entry(prerequisite.message_id.clone())
                        .or_insert_with(|| {
                            first.push((None, prerequisite));
                            first.len() - 1
                        });
                    second.push((i, call, at));
                }
            }
        }
        Ok(Rounds { first, second })
    }
}

/// Delivers `calls` (see the module docs): one outcome per input call, in input order.
pub(crate) async fn deliver(
    http: &HttpDelivery,
    calls: Vec<Call>,
    budget: Duration,
) -> DeliveryReport {
    let deadline = Instant::now() + budget;
    let total = calls.len();
    let rounds = match Rounds::split(http, calls) {
        Ok(rounds) => rounds,
        Err(calls) => return http.deliver_until(calls, deadline).await,
    };
    let mut outcomes: Vec<Option<CallOutcome>> = vec![None; total];
    let (origins, first_calls): (Vec<Option<usize>>, Vec<Call>) = rounds.first.into_iter().unzip();
    let first = http.deliver_until(first_calls, deadline).await;
    let mut requests = first.requests;
    let mut prerequisites: Vec<Option<CallOutcome>> = vec![None; origins.len()];
    for (at, (origin, outcome)) in origins.into_iter().zip(first.outcomes).enumerate() {
        match origin {
            Some(i) => outcomes[i] = Some(outcome),
            None => prerequisites[at] = Some(outcome),
        }
    }

    let mut ready: Vec<(usize, Call)> = Vec::new();
    for (i, call, at) in rounds.second {
        match prerequisites.get(at).and_then(Option::as_ref) {
            Some(p) if p.outcome.is_delivered() => ready.push((i, call)),
            prerequisite => {
                let outcome = blocked(prerequisite);
                outcomes[i] = Some(CallOutcome {
                    message_id: call.message_id.clone(),
                    call,
                    outcome,
                });
            }
        }
    }

    if !ready.is_empty() {
        let settle = http.prerequisite_settle();
        if Instant::now() + settle + MIN_ATTEMPT >= deadline {
            for (i, call) in ready {
                outcomes[i] = Some(CallOutcome {
                    message_id: call.message_id.clone(),
                    call,
                    outcome: Outcome::RetryLater {
                        reason: format!(
                            "retry budget exhausted before this call could follow, {} ms later, the call it needs accepted first",
                            settle.as_millis()
                        ),
                        after: None,
                    },
                });
            }
        } else {
            // The API applies an accepted request after answering it: give it the time it
            // says it may need before sending what depends on it.
            tokio::time::sleep(settle).await;
            let (indices, calls): (Vec<usize>, Vec<Call>) = ready.into_iter().unzip();
            let second = http.deliver_until(calls, deadline).await;
            requests += second.requests;
            for (i, outcome) in indices.into_iter().zip(second.outcomes) {
                outcomes[i] = Some(outcome);
            }
        }
    }

    // Every input index was given exactly one outcome above: round 1 for calls without a
    // prerequisite, and blocked, out of budget or round 2 for the others.
    let outcomes: Vec<CallOutcome> = outcomes.into_iter().flatten().collect();
    debug_assert_eq!(outcomes.len(), total);
    DeliveryReport { outcomes, requests }
}

/// The outcome of a call whose prerequisite was not accepted: the prerequisite's fate.
fn blocked(prerequisite: Option<&CallOutcome>) -> Outcome {
    let Some(prerequisite) = prerequisite else {
        return Outcome::RetryLater {
            reason: "not sent: the call it needs accepted first was not sent (internal error)"
                .into(),
            after: None,
        };
    };
    let what = format!(
        "not sent: the {} of {} it needs accepted first",
        prerequisite.call.call_type.as_str(),
        prerequisite.call.user_id.as_deref().unwrap_or("?"),
    );
    match &prerequisite.outcome {
        Outcome::Dead { reason } => Outcome::Dead {
            reason: format!("{what} was refused: {reason}"),
        },
        Outcome::Paused { reason } => Outcome::Paused {
            reason: reason.clone(),
        },
        Outcome::RetryLater { reason, after } => Outcome::RetryLater {
            reason: format!("{what} was not accepted yet: {reason}"),
            after: *after,
        },
        Outcome::Delivered => Outcome::RetryLater {
            reason: format!("{what} was accepted, yet this call was not sent (internal error)"),
            after: None,
        },
    }
}

/// How `calls` would be sent (see the module docs), without sending anything. A
/// prerequisite's bytes count in its request, though no input index stands for it; a
/// dependant whose prerequisite could never be sent is rejected with it.
pub(crate) fn plan(http: &HttpDelivery, calls: &[Call]) -> Plan {
    if calls.iter().all(|call| http.prerequisite(call).is_none()) {
        return http.plan_in_order(calls);
    }
    let rounds = match Rounds::split(http, calls.to_vec()) {
        Ok(rounds) => rounds,
        Err(_) => return http.plan_in_order(calls),
    };
    let (origins, first_calls): (Vec<Option<usize>>, Vec<Call>) = rounds.first.into_iter().unzip();
    let first = http.plan_in_order(&first_calls);
    let mut plan = Plan::default();
    let mut refused: HashMap<usize, String> = HashMap::new();
    for (at, reason) in first.rejected {
        match origins.get(at).copied().flatten() {
            Some(i) => plan.rejected.push((i, reason)),
            None => {
                refused.insert(at, reason);
            }
        }
    }
    for mut request in first.requests {
        request.calls = request
            .calls
            .iter()
            .filter_map(|&at| origins.get(at).copied().flatten())
            .collect();
        plan.requests.push(request);
    }
    let mut indices = Vec::new();
    let mut second_calls = Vec::new();
    for (i, call, at) in rounds.second {
        match refused.get(&at) {
            Some(reason) => plan.rejected.push((
                i,
                format!("not sendable: the call it needs accepted first is not: {reason}"),
            )),
            None => {
                indices.push(i);
                second_calls.push(call);
            }
        }
    }
    let second = http.plan_in_order(&second_calls);
    for (at, reason) in second.rejected {
        if let Some(&i) = indices.get(at) {
            plan.rejected.push((i, reason));
        }
    }
    for mut request in second.requests {
        request.calls = request
            .calls
            .iter()
            .filter_map(|&at| indices.get(at).copied())
            .collect();
        plan.requests.push(request);
    }
    plan.rejected.sort_by_key(|(i, _)| *i);
    plan
}
