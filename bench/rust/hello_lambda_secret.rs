//! `bench-hello-lambda-secret`: the hello-world function that also does what every sfsync
//! function does at cold start: load the AWS config and read one Secrets Manager secret
//! (`SFSYNC_SECRET_ID`). The cold-start baseline that includes that network call.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let secret_id = std::env::var("SFSYNC_SECRET_ID")?;
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .get_secret_value()
        .secret_id(&secret_id)
        .send()
        .await?;
    let length = secret.secret_string().map_or(0, str::len);
    let length = &length;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(serde_json::json!({ "input": event.payload, "secret_length": length }))
    }))
    .await
}
