//! The functions this deployer created: found by their tag, never by name alone.

use std::collections::HashMap;

use crate::aws::Aws;
use crate::error::DeployError;
use crate::resources::{self, TAG_API, TAG_ENDPOINT_AUTH, TAG_IMAGE, TAG_URL};

/// One managed function.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ManagedFunction {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// MB.
    pub memory: i32,
    /// Seconds.
    pub time: i32,
    /// The image the user gave.
    pub image: String,
    /// Where cold starts read it, when it is staged in S3 (its own prefix or a shared one).
    pub staged: Option<String>,
    /// The HTTP endpoint (the REST API, else the Function URL), when init made one.
    pub endpoint: Option<String>,
    /// Who may call it: `iam` (signed requests) or `none`.
    pub endpoint_auth: Option<String>,
    /// All its tags.
    #[serde(skip)]
    pub tags: HashMap<String, String>,
}

/// A function's tags; `None` when it was deleted after it was listed (in an account where
/// others deploy and remove functions, `ls` must not fail on theirs).
async fn tags_of(aws: &Aws, arn: &str) -> Result<Option<HashMap<String, String>>, DeployError> {
    match aws.lambda.list_tags().resource(arn).send().await {
        Ok(out) => Ok(Some(out.tags.unwrap_or_default())),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(DeployError::aws("lambda:ListTags")(e)),
    }
}

fn managed(
    aws: &Aws,
    config: &aws_sdk_lambda::types::FunctionConfiguration,
    tags: HashMap<String, String>,
) -> ManagedFunction {
    ManagedFunction {
        name: config.function_name().unwrap_or_default().to_owned(),
        arn: config.function_arn().unwrap_or_default().to_owned(),
        memory: config.memory_size().unwrap_or_default(),
        time: config.timeout().unwrap_or_default(),
        image: tags.get(TAG_IMAGE).cloned().unwrap_or_default(),
        staged: config
            .environment()
            .and_then(|e| e.variables())
            .and_then(|v| v.get("SCAR_IMAGE"))
            .filter(|image| image.starts_with("s3://"))
            .cloned(),
        endpoint: tags
            .get(TAG_API)
            .map(|api| crate::endpoint::api_url(aws, api))
            .or_else(|| tags.get(TAG_URL).cloned()),
        // Functions made before endpoints had authorization were open.
        endpoint_auth: tags.get(TAG_ENDPOINT_AUTH).cloned().or_else(|| {
            (tags.contains_key(TAG_API) || tags.contains_key(TAG_URL)).then(|| "none".to_owned())
        }),
        tags,
    }
}

/// Every function with the deployer's tag, by name.
pub async fn list(aws: &Aws) -> Result<Vec<ManagedFunction>, DeployError> {
    let mut found = Vec::new();
    let mut pages = aws.lambda.list_functions().into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(DeployError::aws("lambda:ListFunctions"))?;
        for config in page.functions() {
            let Some(tags) = tags_of(aws, config.function_arn().unwrap_or_default()).await? else {
                continue;
            };
            if resources::is_managed(&tags) {
                found.push(managed(aws, config, tags));
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// One function by name; an error if it is missing or not the deployer's.
pub async fn lookup(aws: &Aws, name: &str) -> Result<ManagedFunction, DeployError> {
    let out = match aws.lambda.get_function().function_name(name).send().await {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            return Err(DeployError::NoFunction(name.to_owned()));
        }
        Err(e) => return Err(DeployError::aws("lambda:GetFunction")(e)),
    };
    let config = out
        .configuration
        .ok_or_else(|| DeployError::NoFunction(name.to_owned()))?;
    let tags = match out.tags {
        Some(tags) => tags,
        None => tags_of(aws, config.function_arn().unwrap_or_default())
            .await?
            .ok_or_else(|| DeployError::NoFunction(name.to_owned()))?,
    };
    if !resources::is_managed(&tags) {
        return Err(DeployError::NotManaged(name.to_owned()));
    }
    Ok(managed(aws, &config, tags))
}

/// `ls`'s table.
pub fn table(functions: &[ManagedFunction]) -> String {
    const COLUMNS: usize = 6;
    let header = ["NAME", "MEMORY", "TIME", "IMAGE", "STAGED", "API_URL"];
    let rows: Vec<[String; COLUMNS]> = functions
        .iter()
        .map(|f| {
            [
                f.name.clone(),
                f.memory.to_string(),
                f.time.to_string(),
                f.image.clone(),
                f.staged.clone().unwrap_or_else(|| "-".into()),
                f.endpoint.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..COLUMNS).map(width).collect();
    let line = |cells: [&str; COLUMNS]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            // Numbers right-aligned, as SCAR printed them.
            if i == 1 || i == 2 {
                text.push_str(&format!("{cell:>w$}  ", w = widths[i]));
            } else {
                text.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        text.trim_end().to_owned() + "\n"
    };
    let mut text = line(header);
    let dashes: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    text.push_str(&line(std::array::from_fn(|i| dashes[i].as_str())));
    for row in &rows {
        text.push_str(&line(std::array::from_fn(|i| row[i].as_str())));
    }
    text
}
