//! `bootstrap` with no arguments, as Lambda starts it: serve invocations.

use anyhow::Context;

pub(crate) async fn serve() -> anyhow::Result<i32> {
    let api = std::env::var("AWS_LAMBDA_RUNTIME_API").context(
        "AWS_LAMBDA_RUNTIME_API is not set, so this is not a Lambda environment: use --emulate EVENT.json, run or pull",
    )?;
    scar_runtime::lambda::serve(&api, std::env::vars()).await?;
    Ok(0)
}
