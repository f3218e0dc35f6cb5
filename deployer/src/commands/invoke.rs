//! `deployer invoke`: a GET, or a POST of a file, to the function's endpoint. The body is
//! written as it came (it may be binary), so this command has no JSON form.

use std::io::Write;

use crate::aws::Aws;
use crate::cli::InvokeArgs;
use crate::endpoint;
use crate::error::DeployError;
use crate::list;

pub(crate) async fn run(aws: &Aws, args: &InvokeArgs) -> Result<u8, DeployError> {
    let function = list::lookup(aws, &args.name).await?;
    let url = function
        .endpoint
        .ok_or_else(|| DeployError::NoEndpoint(args.name.clone()))?;
    let url = match &args.parameters {
        Some(json) => endpoint::with_query(&url, json)?,
        None => url,
    };
    let signer = match function.endpoint_auth.as_deref() {
        Some("iam") => Some(endpoint::Signer::of(aws).await?),
        _ => None,
    };
    let response = endpoint::call(
        &url,
        args.data.as_deref(),
        args.asynchronous,
        signer.as_ref(),
    )
    .await?;
    match &args.output {
        Some(path) => std::fs::write(path, &response.body).map_err(DeployError::io(path))?,
        None => std::io::stdout()
            .lock()
            .write_all(&response.body)
            .map_err(DeployError::io("<stdout>"))?,
    }
    if (200..300).contains(&response.status) {
        Ok(0)
    } else {
        eprintln!("HTTP {} from {url}", response.status);
        Ok(1)
    }
}
