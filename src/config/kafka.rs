//! Kafka settings: brokers, topic, the security flags, and raw librdkafka properties, checked
//! together. The security flags become properties first; the file and `-X` apply after them.

use std::time::Duration;

use super::{ConfigError, Problems, DEFAULT_BROKERS, DEFAULT_TOPIC, MAX_CONNECT_TIMEOUT_SECS};
use crate::cli::KafkaArgs;
use crate::ops::kafka::{properties as raw, ClientProperties, KafkaSettings};

mod security;

/// Reads the first of several environment variables that is set and not empty.
pub(super) fn env_first(names: &[&str]) -> Option<String> {
    names
        .iter()
        .filter_map(|n| std::env::var(n).ok())
        .find(|v| !v.trim().is_empty())
}

pub(super) fn kafka_settings(args: &KafkaArgs, problems: &mut Problems) -> KafkaSettings {
    let mut props = security::properties(&args.security, problems);
    let raw = raw_properties(args, problems);
    security::check_against_raw(&props, &raw, problems);
    props.extend(&raw);
    security::check_sasl_protocol(&props, problems);
    if let Err(why) = raw::check_with_librdkafka(&props) {
        problems.flag("-X", "librdkafka", &why);
    }
    // A properties file may name the brokers (kcat's files do); a flag or variable that names
    // other ones is a contradiction.
    let given = args
        .brokers
        .clone()
        .or_else(|| env_first(&["LANDFALL_BROKERS", "BOOTSTRAP_SERVERS"]));
    let from_raw = raw
        .get("bootstrap.servers")
        .or_else(|| raw.get("metadata.broker.list"))
        .map(str::to_string);
    if let (Some(g), Some(r)) = (&given, &from_raw) {
        if g != r {
            problems.push(
                "--brokers",
                "LANDFALL_BROKERS",
                g,
                &format!("contradicts bootstrap.servers={r} in the Kafka properties; give one"),
            );
        }
    }
    let brokers = given
        .or(from_raw)
        .unwrap_or_else(|| DEFAULT_BROKERS.to_string());
    let topic = args
        .topic
        .clone()
        .or_else(|| env_first(&["LANDFALL_TOPIC", "TOPIC_NAME"]))
        .unwrap_or_else(|| DEFAULT_TOPIC.to_string());
    if brokers.trim().is_empty() {
        problems.push("--brokers", "LANDFALL_BROKERS", "\"\"", "must not be empty");
    }
    if topic.is_empty()
        || topic.len() > 249
        || !topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        problems.push(
            "--topic",
            "LANDFALL_TOPIC",
            format!("{topic:?}"),
            "a Kafka topic name is 1 to 249 characters of [A-Za-z0-9._-]",
        );
    }
    let connect_timeout_secs = problems.range(
        "--connect-timeout-secs",
        "LANDFALL_CONNECT_TIMEOUT_SECS",
        args.connect_timeout_secs,
        1,
        MAX_CONNECT_TIMEOUT_SECS,
        "seconds",
    );
    KafkaSettings {
        brokers,
        topic,
        connect_timeout: Duration::from_secs(connect_timeout_secs),
        properties: props,
    }
}

/// `--kafka-config-file`, then each `-X`: parsed, each refused property named with why, and
/// the whole checked by librdkafka (unknown names, bad values). Secret values are never shown.
fn raw_properties(args: &KafkaArgs, problems: &mut Problems) -> ClientProperties {
    let mut raw = ClientProperties::default();
    if let Some(path) = &args.kafka_config_file {
        match raw::read_file(path) {
            Ok(pairs) => pairs.into_iter().for_each(|(k, v)| raw.push(k, v)),
            Err(why) => problems.push(
                "--kafka-config-file",
                "LANDFALL_KAFKA_CONFIG_FILE",
                path.display(),
                &why,
            ),
        }
    }
    for item in &args.kafka_config {
        match raw::parse_pair(item) {
            Ok((k, v)) => raw.push(k, v),
            Err(why) => problems.flag("-X", item.split('=').next().unwrap_or(""), &why),
        }
    }
    for (k, v) in raw.iter() {
        if let Some(why) = raw::refused(k, v) {
            problems.flag("-X", format!("{k}={}", raw::shown(k, v)), why);
        }
    }
    raw
}

/// Kafka settings alone, for commands that need nothing else validated.
pub fn kafka_only(args: &KafkaArgs) -> Result<KafkaSettings, ConfigError> {
    let mut problems = Problems::default();
    let kafka = kafka_settings(args, &mut problems);
    problems.finish(kafka)
}
