use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfsync_extract::{ExtractInput, ExtractState, handle};

/// mimalloc instead of glibc's malloc: allocating and freeing the records' JSON trees was
/// about a quarter of the CPU per record (issue 16, docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let state = sfsync_pipeline::lambda::cold_start(ExtractState::new).await;
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let input: ExtractInput = serde_json::from_value(event.payload)?;
            let deadline = sfsync_pipeline::aws::deadline_instant(event.context.deadline);
            let output = handle(state, input, &event.context.request_id, deadline).await?;
            Ok::<_, Error>(output)
        },
    ))
    .await
}
