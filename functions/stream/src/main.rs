use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfsync_stream_function::{Invocation, StreamEnv, StreamState, Trigger, handle};

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
