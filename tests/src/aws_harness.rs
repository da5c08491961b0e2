//! What every AWS end-to-end test builds on moto before it runs a handler: the queues, the
//! state table and the secret the SAM template makes, the handlers' states built from them
//! as a cold start builds them, and the map and deliver handlers run over a queue as the
//! event source mappings run them (an event of up to 10 messages, what the handler
//! settled deleted, its reported failures left on the queue).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use serde_json::Value;
use sfsync_deliver::DeliverState;
use sfsync_destinations::Destination;
use sfsync_extract::ExtractState;
use sfsync_map::MapState;
use sfsync_mapping::Config;
use sfsync_pipeline::aws::FunctionEnv;
use sfsync_pipeline::deliver::{DeliverPolicy, Deliverer};
use sfsync_pipeline::queue::SqsQueue;
use sfsync_pipeline::state::dynamo::DynamoStore;

use crate::{ack, aws, failed_ids, queue_with_dlq, receive_event, state_table, unique};

/// How long a received message stays invisible, as the template's queues set it.
const VISIBILITY_SECONDS: i32 = 30;

/// One stack on moto: a records and a delivery queue, each with its dead-letter queue, the
/// state table and the secret, all named after one unique prefix.
pub struct AwsStack {
    pub sdk: aws_config::SdkConfig,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamo: aws_sdk_dynamodb::Client,
    /// What the functions read from their environment: these queues, table and secret.
    pub env: FunctionEnv,
    pub records_dlq: String,
    /// Also the functions' dead-letter queue (`DEAD_LETTER_QUEUE_URL`).
    pub delivery_dlq: String,
}

impl AwsStack {
    /// Creates the stack. A queue moves a message to its dead-letter queue after
    /// `max_receive` receives; `secret` is the function secret (it holds `sfsync_config`
    /// and the values of its references, see [`crate::fixtures::secrets`]).
    pub async fn create(prefix: &str, max_receive: u32, secret: &Value) -> AwsStack {
        let stack = AwsStack::without_secret(prefix, max_receive).await;
        aws_sdk_secretsmanager::Client::new(&stack.sdk)
            .create_secret()
            .name(&stack.env.secret_id)
            .secret_string(secret.to_string())
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "secret: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                )
            });
        stack
    }

    /// The queues and the table only, for a test that builds a handler's state itself: the
    /// secret `env.secret_id` names does not exist.
    pub async fn without_secret(prefix: &str, max_receive: u32) -> AwsStack {
        let sdk = aws().await;
        let sqs = aws_sdk_sqs::Client::new(&sdk);
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let name = unique(prefix);
        let (records_q, records_dlq) = queue_with_dlq(
            &sqs,
            &format!("{name}-records"),
            max_receive,
            VISIBILITY_SECONDS,
        )
        .await;
        let (delivery_q, delivery_dlq) = queue_with_dlq(
            &sqs,
            &format!("{name}-delivery"),
            max_receive,
            VISIBILITY_SECONDS,
        )
        .await;
        let table = format!("{name}-state");
        state_table(&dynamo, &table).await;
        AwsStack {
            env: FunctionEnv {
                secret_id: name,
                state_table: table,
                records_queue_url: Some(records_q),
                delivery_queue_url: Some(delivery_q),
                dead_letter_queue_url: Some(delivery_dlq.clone()),
            },
            sdk,
            sqs,
            dynamo,
            records_dlq,
            delivery_dlq,
        }
    }

    pub fn records_q(&self) -> String {
        self.env.records_queue_url.clone().unwrap_or_default()
    }

    pub fn delivery_q(&self) -> String {
        self.env.delivery_queue_url.clone().unwrap_or_default()
    }

    /// The state table as the functions see it.
    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(self.dynamo.clone(), &self.env.state_table)
    }

    /// The extract function's cold start.
    pub async fn extract_state(&self) -> ExtractState {
        ExtractState::new(&self.sdk, &self.env)
            .await
            .unwrap_or_else(|e| panic!("extract cold start: {e}"))
    }

    /// The map function's cold start.
    pub async fn map_state(&self) -> MapState {
        MapState::new(&self.sdk, &self.env)
            .await
            .unwrap_or_else(|e| panic!("map cold start: {e}"))
    }

    /// The deliver function's cold start.
    pub async fn deliver_state(&self) -> DeliverState {
        DeliverState::new(&self.sdk, &self.env)
            .await
            .unwrap_or_else(|e| panic!("deliver cold start: {e}"))
    }

    /// The map function's state for `config`, built directly (no secret read).
    pub fn map_state_for(&self, config: &Config) -> MapState {
        MapState {
            config: Arc::new(config.clone()),
            delivery_queue: SqsQueue::new(self.sqs.clone(), self.delivery_q()),
            store: self.store(),
        }
    }

    /// The deliver function's state for `config` with `policy`, built directly (no secret
    /// read); its destinations retry after milliseconds ([`quick_destinations`]).
    pub fn deliver_state_for(&self, config: &Config, policy: DeliverPolicy) -> DeliverState {
        DeliverState {
            deliverer: Deliverer::new(quick_destinations(config), policy),
            delivery_queue: SqsQueue::new(self.sqs.clone(), self.delivery_q()),
            dead_letter_queue: SqsQueue::new(self.sqs.clone(), &self.delivery_dlq),
            store: self.store(),
        }
    }

    /// One map invocation with `event` (taken from the records queue); deletes what it
    /// settled and returns the message ids it reported as failed.
    pub async fn map_event(&self, map: &MapState, event: SqsEvent) -> Vec<String> {
        let response = sfsync_map::handle(map, event.clone())
            .await
            .unwrap_or_else(|e| panic!("map: {e}"));
        let failed = failed_ids(&response);
        ack(&self.sqs, &self.records_q(), &event, &failed).await;
        failed
    }

    /// One deliver invocation with `event` (taken from the delivery queue); deletes what it
    /// settled and returns the message ids it reported as failed.
    pub async fn deliver_event(&self, deliver: &DeliverState, event: SqsEvent) -> Vec<String> {
        let response = sfsync_deliver::handle(deliver, event.clone(), None)
            .await
            .unwrap_or_else(|e| panic!("deliver: {e}"));
        let failed = failed_ids(&response);
        ack(&self.sqs, &self.delivery_q(), &event, &failed).await;
        failed
    }

    /// The map function (one cold start) over everything visible on the records queue;
    /// returns the failures it reported.
    pub async fn map_all(&self) -> Vec<String> {
        let map = self.map_state().await;
        let mut failures = Vec::new();
        loop {
            let event = receive_event(&self.sqs, &self.records_q(), 10).await;
            if event.records.is_empty() {
                return failures;
            }
            failures.extend(self.map_event(&map, event).await);
        }
    }

    /// The deliver function over everything visible on the delivery queue; returns the
    /// failures it reported.
    pub async fn deliver_all(&self, deliver: &DeliverState) -> Vec<String> {
        let mut failures = Vec::new();
        loop {
            let event = receive_event(&self.sqs, &self.delivery_q(), 10).await;
            if event.records.is_empty() {
                return failures;
            }
            failures.extend(self.deliver_event(deliver, event).await);
        }
    }

    /// Every body on `queue_url`, read until it is empty, deleting as it goes.
    pub async fn drain(&self, queue_url: &str) -> Vec<String> {
        let mut bodies = Vec::new();
        loop {
            let event = receive_event(&self.sqs, queue_url, 10).await;
            if event.records.is_empty() {
                return bodies;
            }
            bodies.extend(event.records.iter().filter_map(|r| r.body.clone()));
            ack(&self.sqs, queue_url, &event, &[]).await;
        }
    }

    /// Every dead letter on the functions' dead-letter queue, as JSON (received, not
    /// deleted); a body that is not JSON fails the test.
    pub async fn dead_letters(&self) -> Vec<Value> {
        self.receive_all(&self.delivery_dlq)
            .await
            .iter()
            .map(|m| {
                let body = m.body.as_deref().unwrap_or_default();
                serde_json::from_str(body)
                    .unwrap_or_else(|e| panic!("dead letter is not JSON: {e}: {body}"))
            })
            .collect()
    }

    /// Receives every message visible on `queue_url` without deleting any: they stay in
    /// flight until their visibility ends.
    pub async fn receive_all(&self, queue_url: &str) -> Vec<SqsMessage> {
        let mut messages = Vec::new();
        loop {
            let event = receive_event(&self.sqs, queue_url, 10).await;
            if event.records.is_empty() {
                return messages;
            }
            messages.extend(event.records);
        }
    }
}

/// The config's destinations retrying after 2 to 16 ms instead of their defaults (every
/// Retry-After a destination sends is still honoured in full): a test of retries then takes
/// milliseconds.
pub fn quick_destinations(config: &Config) -> Vec<Arc<Destination>> {
    let http = sfsync_destinations::http_client().unwrap_or_else(|e| panic!("{e}"));
    config
        .destinations
        .iter()
        .map(|d| {
            let mut built = Destination::new(d, http.clone()).unwrap_or_else(|e| panic!("{e}"));
            built.set_backoff(Duration::from_millis(2), Duration::from_millis(16));
            Arc::new(built)
        })
        .collect()
}
