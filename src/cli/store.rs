//! Settings of the object store that `--output-dir` and `--rejects-dir` may name.

use clap::Args;

/// How an object store is used (credentials and endpoint come from the cloud's own
/// environment: AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS, …).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// How long a request to an object store (s3://, gs://, az:// directories) keeps being
    /// retried while the store fails (throttling, 5xx, unreachable) before the command stops,
    /// e.g. 30s, 5m.
    #[arg(
        long,
        env = "LANDFALL_STORE_TIMEOUT",
        default_value = "60s",
        value_name = "DURATION"
    )]
    pub store_timeout: String,
}
