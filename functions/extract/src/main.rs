use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfsync_extract::{ExtractInput, ExtractState, handle};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_current_span(true)
        .without_time()
        .init();
    let sdk = sfsync_pipeline::aws::sdk_config().await;
    let env =
        sfsync_pipeline::aws::exit_on_setup_error(sfsync_pipeline::aws::FunctionEnv::from_env());
    let state = sfsync_pipeline::aws::exit_on_setup_error(ExtractState::new(&sdk, &env).await);
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
