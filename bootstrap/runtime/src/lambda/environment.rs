//! The container's variables for one run, in one place: which come from the function, which
//! from the invocation, and the one namespace a caller's text may reach.
//!
//! Order (a later entry wins): the image's `Env`, the function's `CONT_VAR_*`, the function's
//! AWS credentials and region, a direct invoke's `env` (its invoker holds
//! `lambda:InvokeFunction` on the function: SCAR's documented way to pass variables), HTTP
//! query parameters as `HTTP_QUERY_<NAME>` only, then what the runtime sets for the run.
//! Nothing an HTTP caller sends (query, headers, path, body) names any other variable.

/// The variables from the function's own environment that the container also gets: its
/// credentials and region, and what Lambda says about the function (a script sizes its
/// threads by the memory, names its outputs by the function). Never the Runtime API's
/// address (a command could take or answer invocations) nor `TZ` (Lambda's `:UTC` would
/// override the image's own).
const FORWARDED: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
];

/// The prefix of every variable an HTTP query parameter becomes.
pub const HTTP_QUERY_PREFIX: &str = "HTTP_QUERY_";

/// The variable a query parameter becomes: the prefix and the name upper-cased, with every
/// character outside `[A-Z0-9_]` replaced by `_` (so `=`, spaces, dots and unicode cannot
/// reach a shell or name another variable).
pub fn http_query_variable(name: &str) -> String {
    let mut out = String::with_capacity(HTTP_QUERY_PREFIX.len() + name.len());
    out.push_str(HTTP_QUERY_PREFIX);
    out.extend(name.chars().map(|c| match c.to_ascii_uppercase() {
        c @ ('A'..='Z' | '0'..='9' | '_') => c,
        _ => '_',
    }));
    out
}

/// The variables the runtime sets for a run, named once.
pub mod names {
    /// The request id.
    pub const REQUEST_ID: &str = "REQUEST_ID";
    /// `/tmp/$REQUEST_ID/input`.
    pub const INPUT_DIR: &str = "SCAR_INPUT_DIR";
    /// `/tmp/$REQUEST_ID/output`: files left here are uploaded.
    pub const OUTPUT_DIR: &str = "SCAR_OUTPUT_DIR";
    /// The run's input file (an S3 object, a message body, an HTTP body).
    pub const INPUT_FILE: &str = "SCAR_INPUT_FILE";
    /// The raw event, as Lambda delivered it.
    pub const EVENT_FILE: &str = "SCAR_EVENT_FILE";
    /// An HTTP request's method, path, query and headers, as JSON.
    pub const HTTP_REQUEST_FILE: &str = "SCAR_HTTP_REQUEST_FILE";
    /// Where a command may write an HTTP response's `body`, `content-type` and `status`.
    pub const HTTP_RESPONSE_DIR: &str = "SCAR_HTTP_RESPONSE_DIR";
    /// The invocation's client context (mobile SDK invokes), as JSON.
    pub const CLIENT_CONTEXT_FILE: &str = "SCAR_CLIENT_CONTEXT_FILE";
    /// The invocation's Cognito identity, as JSON.
    pub const IDENTITY_FILE: &str = "SCAR_IDENTITY_FILE";
    /// SCAR's `init -ep`: the function package's extra folder, when it has one.
    pub const EXTRA_PAYLOAD: &str = "EXTRA_PAYLOAD";
    /// The X-Ray trace header of the invocation.
    pub const TRACE_ID: &str = "_X_AMZN_TRACE_ID";
    /// SCAR's later supervisor and OSCAR: the input file.
    pub const OSCAR_INPUT_FILE: &str = "INPUT_FILE_PATH";
    /// SCAR's later supervisor and OSCAR: the output directory.
    pub const OSCAR_OUTPUT_DIR: &str = "TMP_OUTPUT_DIR";
    /// SCAR's later supervisor and OSCAR: the S3 key of the input object.
    pub const OSCAR_OBJECT_KEY: &str = "STORAGE_OBJECT_KEY";
    /// SCAR's later supervisor and OSCAR: when the record's event happened.
    pub const OSCAR_EVENT_TIME: &str = "EVENT_TIME";
}

/// The variables of one run, in the order they are applied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunVariables {
    vars: Vec<(String, String)>,
}

impl RunVariables {
    /// The function's `CONT_VAR_*`, then its forwarded AWS variables from `lookup`.
    pub fn of_function(
        container_env: &[(String, String)],
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let mut vars = container_env.to_vec();
        for name in FORWARDED {
            if let Some(value) = lookup(name) {
                vars.push(((*name).to_owned(), value));
            }
        }
        if let Some(token) = lookup("AWS_SESSION_TOKEN") {
            vars.push(("AWS_SECURITY_TOKEN".to_owned(), token));
        }
        Self { vars }
    }

    /// A direct invoke's `env`, as given.
    pub fn invoker(&mut self, env: impl IntoIterator<Item = (String, String)>) {
        self.vars.extend(env);
    }

    /// HTTP query parameters, each only as `HTTP_QUERY_<NAME>`.
    pub fn http_query(&mut self, query: &[(String, String)]) {
        self.vars.extend(
            query
                .iter()
                .map(|(name, value)| (http_query_variable(name), value.clone())),
        );
    }

    /// A variable the runtime sets (one of [`names`]).
    pub fn set(&mut self, name: &'static str, value: impl Into<String>) {
        self.vars.push((name.to_owned(), value.into()));
    }

    /// The run's input file, also under OSCAR's name.
    pub fn input_file(&mut self, path: &std::path::Path) {
        let path = path.display().to_string();
        self.set(names::INPUT_FILE, path.clone());
        self.set(names::OSCAR_INPUT_FILE, path);
    }

    /// The variables, in order.
    pub fn into_vec(self) -> Vec<(String, String)> {
        self.vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_parameter_only_ever_names_an_http_query_variable() {
        for (name, expected) in [
            ("animal", "HTTP_QUERY_ANIMAL"),
            ("PATH", "HTTP_QUERY_PATH"),
            ("LD_PRELOAD", "HTTP_QUERY_LD_PRELOAD"),
            ("a=b", "HTTP_QUERY_A_B"),
            ("with space", "HTTP_QUERY_WITH_SPACE"),
            ("ünï", "HTTP_QUERY__N_"),
            ("", "HTTP_QUERY_"),
            ("x.y-z", "HTTP_QUERY_X_Y_Z"),
        ] {
            assert_eq!(http_query_variable(name), expected);
        }
    }

    #[test]
    fn the_function_comes_first_and_the_runtime_last() {
        let lookup = |name: &str| match name {
            "AWS_SESSION_TOKEN" => Some("tok".to_owned()),
            "AWS_REGION" => Some("eu-west-1".to_owned()),
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE" => Some("2048".to_owned()),
            "AWS_LAMBDA_RUNTIME_API" => Some("127.0.0.1:9001".to_owned()),
            "TZ" => Some(":UTC".to_owned()),
            _ => None,
        };
        let mut vars = RunVariables::of_function(&[("GREETING".into(), "hi".into())], lookup);
        vars.http_query(&[("PATH".into(), "/evil".into())]);
        vars.set(names::REQUEST_ID, "r");
        let vars = vars.into_vec();
        let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "GREETING",
                "AWS_SESSION_TOKEN",
                "AWS_REGION",
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                "AWS_SECURITY_TOKEN",
                "HTTP_QUERY_PATH",
                "REQUEST_ID"
            ]
        );
    }
}
