use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfsync_map::{MapState, handle};

/// mimalloc instead of glibc's malloc: allocating and freeing the records' JSON trees was
/// about a quarter of the CPU per record (issue 16, docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let state = sfsync_pipeline::lambda::cold_start(MapState::new).await;
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handle(state, event.payload).await?)
    }))
    .await
}
