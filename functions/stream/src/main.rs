use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfsync_stream_function::{Invocation, StreamEnv, StreamState, Trigger, handle};

/// mimalloc instead of glibc's malloc: allocating and freeing the records' JSON trees was
/// about a quarter of the CPU per record (issue 16, docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let state = sfsync_pipeline::lambda::cold_start(async |sdk, env| {
        StreamState::new(sdk, env, &StreamEnv::from_env()?).await
    })
    .await;
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let trigger = Trigger::of(event.payload)?;
            let invocation =
                Invocation::until_deadline(event.context.request_id, event.context.deadline);
            let output = handle(state, invocation).await?;
            Ok::<_, Error>(trigger.response(&output))
        },
    ))
    .await
}
