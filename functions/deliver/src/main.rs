use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfsync_deliver::{DeliverState, handle};

/// mimalloc instead of glibc's malloc: allocating and freeing the records' JSON trees was
/// about a quarter of the CPU per record (issue 16, docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let state = sfsync_pipeline::lambda::cold_start(DeliverState::new).await;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = sfsync_pipeline::aws::deadline_instant(event.context.deadline);
        Ok::<_, Error>(handle(state, event.payload, deadline).await?)
    }))
    .await
}
