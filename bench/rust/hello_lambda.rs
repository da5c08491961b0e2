//! `bench-hello-lambda`: the smallest useful `lambda_runtime` function (echoes its input),
//! the cold-start baseline for the sfsync functions. Built with the same profile.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(event.payload)
    }))
    .await
}
