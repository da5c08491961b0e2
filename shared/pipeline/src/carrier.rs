//! Carrying out a deliver [`Settlement`], once for every host: the deliver Lambda on SQS
//! (crate::deliver_sqs) and the local runs on their in-process delay queue (crate::local).
//! The order is the stage's — counts, dead letters, paused calls, retry — so a message is
//! done with only once everything before its acknowledgement is durably kept.
//!
//! The hosts differ in two rules only ([`HostRules`]), both because of what their queue
//! can do:
//! - **paused calls** (a destination refused our credentials): SQS keeps them, back on the
//!   queue after [`crate::deliver::PAUSE_RECHECK`] with the `DestinationPaused` metric the
//!   template alarms on; a local run stops instead, so its checkpoint stays before them;
//! - **a message nothing of which went through**: SQS leaves the received message in flight,
//!   visible again after the wait (its receive counts toward the redrive policy's
//!   `maxReceiveCount`); a local queue keeps nothing in flight, so the calls go back with
//!   `attempt + 1` and `MAX_ATTEMPTS` ends them.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use crate::dead_letter::{DeadLetterError, DeadLetterSink};
use crate::deliver::{Paused, Settlement};
use crate::message::CallsMessage;
use crate::queue::{Queue, SendError};
use crate::report::RunCounts;
use crate::state::StateStore;

/// Where a settlement's counters go.
pub trait Tally: Send + Sync {
    /// Adds one settlement's counters of `sync` to run `run_id`.
    fn add(&self, run_id: &str, sync: &str, counts: &RunCounts) -> impl Future<Output = ()> + Send;
}

/// The run's counters in the state store, each settlement's also as EMF metrics (AWS).
pub struct StoreTally<'a, S>(pub &'a S);

impl<S: StateStore> Tally for StoreTally<'_, S> {
    async fn add(&self, run_id: &str, sync: &str, counts: &RunCounts) {
        crate::metrics::emit("deliver", sync, counts, 0);
        // Counters are best effort: a lost increment must not re-send the calls.
        if let Err(e) = self.0.add_counts(run_id, sync, counts).await {
            tracing::warn!(error = %e, "run counters not updated");
        }
    }
}

/// A local delivery's counters, summed in memory: the local host stores them together with
/// the map stage's.
impl Tally for Mutex<RunCounts> {
    async fn add(&self, _run_id: &str, _sync: &str, counts: &RunCounts) {
        self.lock().unwrap_or_else(|p| p.into_inner()).add(counts);
    }
}

/// What a host does with the calls of a destination that refused our credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPause {
    /// Put them back on the queue, released after the settlement's recheck delay.
    Requeue,
    /// Stop ([`CarryError::Paused`]): nothing is dead-lettered or put back.
    Stop,
}

/// What a host does with a message nothing of which went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WholeRetry {
    /// Leave the received message on its queue ([`CarryError::Unavailable`]).
    Leave,
    /// Send the calls again, like any other retry.
    Requeue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRules {
    pub on_pause: OnPause,
    pub whole_retry: WholeRetry,
}

impl HostRules {
    pub const SQS: HostRules = HostRules {
        on_pause: OnPause::Requeue,
        whole_retry: WholeRetry::Leave,
    };
    pub const LOCAL: HostRules = HostRules {
        on_pause: OnPause::Stop,
        whole_retry: WholeRetry::Requeue,
    };
}

/// Why a message is not done with: on SQS it stays on the queue (a batch item failure);
/// locally the delivery stops.
#[derive(Debug, thiserror::Error)]
pub enum CarryError {
    #[error("nothing went through ({reason}); visible again in {} s", after.as_secs())]
    Unavailable { reason: String, after: Duration },
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    #[error("cannot put {calls} call(s) back on the queue: {source}")]
    Requeue {
        calls: usize,
        source: Box<SendError<CallsMessage>>,
    },
    /// "credentials rejected by <destination>: HTTP 401: …" ([`OnPause::Stop`]).
    #[error("{reason}")]
    Paused { reason: String },
}

/// What a carried-out settlement did, for a host's progress display.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Carried {
    pub destination: String,
    pub delivered: u64,
    /// Calls put back to try again.
    pub waiting: Option<Waiting>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Waiting {
    pub after: Duration,
    /// The destination's last answer.
    pub reason: String,
}

/// A host's delivery queue, dead-letter sink and counters, and its rules.
pub struct Carrier<'a, Q, D, T> {
    pub queue: &'a Q,
    pub dead_letters: &'a D,
    pub tally: &'a T,
    pub rules: HostRules,
}

impl<Q, D, T> Carrier<'_, Q, D, T>
where
    Q: Queue<CallsMessage>,
    D: DeadLetterSink,
    T: Tally,
{
    /// Carries `settlement` out; `Ok` means the message it came from may be acknowledged.
    pub async fn carry_out(&self, settlement: Settlement) -> Result<Carried, CarryError> {
        for (sync, counts) in &settlement.counts {
            self.tally.add(&settlement.run_id, sync, counts).await;
        }
        self.dead_letters.write(&settlement.dead).await?;
        let delivered = settlement.delivered();
        if let Some(paused) = settlement.paused {
            self.keep_paused(&settlement.destination, paused).await?;
        }
        let mut carried = Carried {
            destination: settlement.destination,
            delivered,
            waiting: None,
        };
        if let Some(retry) = settlement.retry {
            if retry.whole && self.rules.whole_retry == WholeRetry::Leave {
                return Err(CarryError::Unavailable {
                    reason: retry.reason,
                    after: retry.after,
                });
            }
            self.requeue(retry.message, retry.after).await?;
            carried.waiting = Some(Waiting {
                after: retry.after,
                reason: retry.reason,
            });
        }
        Ok(carried)
    }

    async fn keep_paused(&self, destination: &str, paused: Paused) -> Result<(), CarryError> {
        if self.rules.on_pause == OnPause::Stop {
            return Err(CarryError::Paused {
                reason: paused.reason,
            });
        }
        let calls = paused.message.calls.len();
        tracing::error!(destination = %destination, calls, reason = %paused.reason,
            "destination paused: credentials rejected; calls kept on the queue");
        for line in crate::metrics::paused_lines(destination, calls as u64) {
            println!("{line}");
        }
        self.requeue(paused.message, paused.recheck).await
    }

    async fn requeue(&self, message: CallsMessage, after: Duration) -> Result<(), CarryError> {
        let calls = message.calls.len();
        self.queue
            .send(message, Some(after))
            .await
            .map(drop)
            .map_err(|source| CarryError::Requeue {
                calls,
                source: Box::new(source),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::Retry;
    use crate::message::{DeadLetter, MESSAGE_VERSION, MessageError};
    use sfsync_mapping::Call;

    /// A delivery queue that keeps what it is sent, or refuses everything.
    #[derive(Default)]
    struct TestQueue {
        sent: Mutex<Vec<(CallsMessage, Option<Duration>)>>,
        refuse: bool,
    }

    impl Queue<CallsMessage> for TestQueue {
        async fn send(
            &self,
            message: CallsMessage,
            delay: Option<Duration>,
        ) -> Result<usize, SendError<CallsMessage>> {
            if self.refuse {
                // As SqsQueue refuses a call too large for any queue message.
                return Err(SendError::TooLarge {
                    message,
                    items: vec![0],
                    source: MessageError::ItemTooLarge {
                        size: 300_000,
                        max: 262_144,
                    },
                });
            }
            self.sent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((message, delay));
            Ok(1)
        }
    }

    fn call(id: &str) -> Call {
        serde_json::from_value(serde_json::json!({
            "type": "identify", "messageId": id, "timestamp": "2024-05-01T12:34:56.000Z",
            "userId": id, "traits": {"email": "a@example.com"},
            "context": {"sfsync": {"sync": "contacts", "object": "Contact", "kind": "people", "recordId": id}}
        }))
        .expect("a call")
    }

    fn message(attempt: u32, ids: &[&str]) -> CallsMessage {
        CallsMessage {
            v: MESSAGE_VERSION,
            run_id: "run-1".into(),
            destination: "seg".into(),
            attempt,
            paused_since: None,
            calls: ids.iter().map(|id| call(id)).collect(),
        }
    }

    /// Two calls delivered, one dead, one to retry after 30 s.
    fn partly_delivered() -> Settlement {
        let mut counts = RunCounts {
            delivered: 2,
            dead: 1,
            retried: 1,
            ..RunCounts::default()
        };
        counts.destination_requests = 1;
        Settlement {
            run_id: "run-1".into(),
            destination: "seg".into(),
            counts: [("contacts".to_string(), counts)].into(),
            dead: vec![DeadLetter {
                v: MESSAGE_VERSION,
                run_id: "run-1".into(),
                destination: "seg".into(),
                reason: "HTTP 400: bad email".into(),
                call: call("003D"),
            }],
            paused: None,
            retry: Some(Retry {
                message: message(1, &["003R"]),
                after: Duration::from_secs(30),
                reason: "HTTP 503".into(),
                whole: false,
            }),
        }
    }

    struct Host {
        _dir: tempfile::TempDir,
        dead_letters: crate::dead_letter::DeadLetterFile,
        tally: Mutex<RunCounts>,
    }

    impl Host {
        fn new() -> Host {
            let dir = tempfile::tempdir().expect("tempdir");
            let dead_letters =
                crate::dead_letter::DeadLetterFile::new(dir.path().join("dead.jsonl"));
            Host {
                _dir: dir,
                dead_letters,
                tally: Mutex::new(RunCounts::default()),
            }
        }

        fn carrier<'a>(
            &'a self,
            queue: &'a TestQueue,
            rules: HostRules,
        ) -> Carrier<'a, TestQueue, crate::dead_letter::DeadLetterFile, Mutex<RunCounts>> {
            Carrier {
                queue,
                dead_letters: &self.dead_letters,
                tally: &self.tally,
                rules,
            }
        }

        fn dead(&self) -> Vec<DeadLetter> {
            if !self.dead_letters.path().exists() {
                return Vec::new();
            }
            crate::dead_letter::read_file(self.dead_letters.path()).expect("dead letters")
        }
    }

    #[tokio::test]
    async fn a_partial_delivery_counts_dead_letters_and_requeues_the_rest_with_its_wait() {
        let host = Host::new();
        let queue = TestQueue::default();
        let carried = host
            .carrier(&queue, HostRules::SQS)
            .carry_out(partly_delivered())
            .await
            .expect("carried out");
        assert_eq!(
            carried,
            Carried {
                destination: "seg".into(),
                delivered: 2,
                waiting: Some(Waiting {
                    after: Duration::from_secs(30),
                    reason: "HTTP 503".into()
                }),
            }
        );
        let tally = host.tally.lock().expect("tally").clone();
        assert_eq!((tally.delivered, tally.dead, tally.retried), (2, 1, 1));
        let dead = host.dead();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, "HTTP 400: bad email");
        let sent = queue.sent.lock().expect("sent");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0.attempt, 1);
        assert_eq!(sent[0].0.calls[0].message_id, "003R");
        assert_eq!(sent[0].1, Some(Duration::from_secs(30)));
    }

    #[tokio::test]
    async fn a_requeue_that_fails_leaves_the_message_with_the_reason_after_the_dead_letters() {
        let host = Host::new();
        let queue = TestQueue {
            refuse: true,
            ..TestQueue::default()
        };
        let err = host
            .carrier(&queue, HostRules::SQS)
            .carry_out(partly_delivered())
            .await
            .expect_err("the rest could not be put back");
        assert!(
            matches!(err, CarryError::Requeue { calls: 1, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("cannot put 1 call(s) back on the queue")
                && text.contains("1 item(s) cannot fit a queue message"),
            "{text}"
        );
        // What came before is kept: the dead call is dead-lettered with its reason, so
        // receiving the message again re-sends calls, but loses none.
        assert_eq!(host.dead().len(), 1);
    }

    #[tokio::test]
    async fn a_message_nothing_of_which_went_through_is_left_on_sqs_and_requeued_locally() {
        let whole = || Settlement {
            run_id: "run-1".into(),
            destination: "seg".into(),
            retry: Some(Retry {
                message: message(3, &["003A", "003B"]),
                after: Duration::from_secs(12),
                reason: "HTTP 429".into(),
                whole: true,
            }),
            ..Settlement::default()
        };
        let host = Host::new();
        let queue = TestQueue::default();
        let err = host
            .carrier(&queue, HostRules::SQS)
            .carry_out(whole())
            .await
            .expect_err("left in flight");
        assert!(
            matches!(&err, CarryError::Unavailable { reason, after } if reason == "HTTP 429" && *after == Duration::from_secs(12)),
            "{err:?}"
        );
        assert!(queue.sent.lock().expect("sent").is_empty());

        let carried = host
            .carrier(&queue, HostRules::LOCAL)
            .carry_out(whole())
            .await
            .expect("put back");
        assert_eq!(
            carried.waiting.map(|w| w.after),
            Some(Duration::from_secs(12))
        );
        let sent = queue.sent.lock().expect("sent");
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].0.attempt, sent[0].0.calls.len()), (3, 2));
    }

    #[tokio::test]
    async fn paused_calls_go_back_after_the_recheck_on_sqs_and_stop_a_local_run() {
        let paused = || Settlement {
            run_id: "run-1".into(),
            destination: "seg".into(),
            paused: Some(Paused {
                message: CallsMessage {
                    paused_since: Some(1_700_000_000_000),
                    ..message(2, &["003P"])
                },
                recheck: Duration::from_secs(900),
                reason: "credentials rejected by seg: HTTP 401".into(),
            }),
            retry: Some(Retry {
                message: message(3, &["003R"]),
                after: Duration::from_secs(5),
                reason: "HTTP 503".into(),
                whole: false,
            }),
            ..Settlement::default()
        };
        let host = Host::new();
        let queue = TestQueue::default();
        host.carrier(&queue, HostRules::SQS)
            .carry_out(paused())
            .await
            .expect("kept on the queue");
        {
            let sent = queue.sent.lock().expect("sent");
            let kept: Vec<_> = sent
                .iter()
                .map(|(m, d)| (m.calls[0].message_id.as_str(), m.paused_since, *d))
                .collect();
            assert_eq!(
                kept,
                vec![
                    (
                        "003P",
                        Some(1_700_000_000_000),
                        Some(Duration::from_secs(900))
                    ),
                    ("003R", None, Some(Duration::from_secs(5))),
                ]
            );
        }

        let queue = TestQueue::default();
        let err = host
            .carrier(&queue, HostRules::LOCAL)
            .carry_out(paused())
            .await
            .expect_err("the run stops");
        assert_eq!(err.to_string(), "credentials rejected by seg: HTTP 401");
        assert!(queue.sent.lock().expect("sent").is_empty());
        assert!(
            host.dead().is_empty(),
            "nothing is dead-lettered for a pause"
        );
    }
}
