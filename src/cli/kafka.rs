//! Where Kafka is and how to talk to it: brokers, topic, security, raw librdkafka properties.

use std::path::PathBuf;

use clap::Args;

/// Where Kafka is. The original project's variable names keep working.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers [env: LANDFALL_BROKERS, or BOOTSTRAP_SERVERS] [default: 127.0.0.1:9092]
    #[arg(long)]
    pub brokers: Option<String>,

    /// Topic of view events [env: LANDFALL_TOPIC, or TOPIC_NAME] [default: view-log-events-1]
    #[arg(long)]
    pub topic: Option<String>,

    /// How long start-up waits for a reachable broker, in seconds.
    #[arg(
        long,
        env = "LANDFALL_CONNECT_TIMEOUT_SECS",
        default_value_t = 30,
        value_name = "SECS"
    )]
    pub connect_timeout_secs: u64,

    /// A librdkafka property, KEY=VALUE, for what the flags do not cover (TLS, SASL, tuning);
    /// repeatable; applies last. Properties that would break exactly-once are refused. No
    /// variable: in an environment, use a file (LANDFALL_KAFKA_CONFIG_FILE).
    #[arg(short = 'X', long = "kafka-config", value_name = "KEY=VALUE")]
    pub kafka_config: Vec<String>,

    /// A file of librdkafka properties, one KEY=VALUE per line, # for comments (the format
    /// kcat reads with -F); applies before -X.
    #[arg(long, env = "LANDFALL_KAFKA_CONFIG_FILE", value_name = "FILE")]
    pub kafka_config_file: Option<std::path::PathBuf>,

    #[command(flatten)]
    pub security: SecurityArgs,
}

/// TLS and SASL for the common cases; anything else goes through -X or --kafka-config-file.
/// Values are checked with the other settings; secrets are never shown.
#[derive(Debug, Clone, Default, Args)]
pub struct SecurityArgs {
    /// How clients talk to the brokers: plaintext, ssl, sasl_plaintext or sasl_ssl
    /// [default: plaintext]
    #[arg(long, env = "LANDFALL_SECURITY_PROTOCOL", value_name = "PROTOCOL")]
    pub security_protocol: Option<String>,

    /// SASL mechanism: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (whose token
    /// settings go through -X)
    #[arg(long, env = "LANDFALL_SASL_MECHANISM", value_name = "MECHANISM")]
    pub sasl_mechanism: Option<String>,

    /// SASL user name
    #[arg(long, env = "LANDFALL_SASL_USERNAME", value_name = "USER")]
    pub sasl_username: Option<String>,

    /// SASL password; prefer --sasl-password-file or the variable, since a command line shows
    /// in the process list
    #[arg(
        long,
        env = "LANDFALL_SASL_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<Secret>,

    /// A file holding the SASL password (one line)
    #[arg(long, env = "LANDFALL_SASL_PASSWORD_FILE", value_name = "FILE")]
    pub sasl_password_file: Option<PathBuf>,

    /// CA certificate(s) to verify the brokers with, PEM file or directory
    /// [default: the system's]
    #[arg(long, env = "LANDFALL_SSL_CA_LOCATION", value_name = "PATH")]
    pub ssl_ca_location: Option<PathBuf>,

    /// Client certificate for mutual TLS, PEM
    #[arg(long, env = "LANDFALL_SSL_CERTIFICATE_LOCATION", value_name = "FILE")]
    pub ssl_certificate_location: Option<PathBuf>,

    /// Client private key for mutual TLS, PEM
    #[arg(long, env = "LANDFALL_SSL_KEY_LOCATION", value_name = "FILE")]
    pub ssl_key_location: Option<PathBuf>,

    /// Password of the client private key
    #[arg(
        long,
        env = "LANDFALL_SSL_KEY_PASSWORD",
        value_name = "PASSWORD",
        hide_env_values = true
    )]
    pub ssl_key_password: Option<Secret>,
}

/// A secret from the command line or the environment: its `Debug` shows `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}
