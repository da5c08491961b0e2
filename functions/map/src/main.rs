use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use sfsync_map::{MapState, handle};

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
    let state = sfsync_pipeline::aws::exit_on_setup_error(MapState::new(&sdk, &env).await);
    let state = &state;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handle(state, event.payload).await?)
    }))
    .await
}
