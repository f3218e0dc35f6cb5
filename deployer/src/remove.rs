//! `deployer rm`: a function and what init recorded in its tags, nothing else.

use crate::aws::Aws;
use crate::error::DeployError;
use crate::list::{self, ManagedFunction};
use crate::resources;

/// Removes one managed function and its resources; returns what was removed.
pub async fn remove(aws: &Aws, function: &ManagedFunction) -> Result<Vec<String>, DeployError> {
    let mut removed = Vec::new();
    for resource in resources::from_tags(&function.name, &function.tags) {
        resource.remove(aws).await?;
        removed.push(resource.to_string());
    }
    Ok(removed)
}

/// `rm -n NAME`.
pub async fn remove_named(aws: &Aws, name: &str) -> Result<Vec<String>, DeployError> {
    let function = list::lookup(aws, name).await?;
    remove(aws, &function).await
}

/// `rm -a`: every function carrying the deployer's tag.
pub async fn remove_all(aws: &Aws) -> Result<Vec<String>, DeployError> {
    let mut removed = Vec::new();
    for function in list::list(aws).await? {
        removed.extend(remove(aws, &function).await?);
    }
    Ok(removed)
}
