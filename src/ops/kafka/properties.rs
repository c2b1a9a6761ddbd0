//! librdkafka client properties: those the security flags stand for, then the raw ones,
//! `--kafka-config-file FILE` (the property format kcat reads with `-F`) and `-X key=value`,
//! for whatever the flags do not cover. They apply last, on every client. The raw properties
//! that would break exactly-once are Landfall's own and refused. Values of secret properties
//! never reach a log, an error message or a `Debug` print.

use std::fmt;
use std::path::Path;

use rdkafka::config::ClientConfig;

/// Properties in the order they apply: the security flags', the file's, then each `-X`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientProperties(Vec<(String, String)>);

impl fmt::Debug for ClientProperties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, shown(k, v))))
            .finish()
    }
}

/// Whether a property's value is a secret: passwords, secrets, tokens, keys.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        "ssl.key",
        ".pem",
        "sasl.oauthbearer.config",
    ]
    .iter()
    .any(|s| key.contains(s))
}

/// A value as it may be shown: `***` for a secret.
pub fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) {
        "***"
    } else {
        value
    }
}

impl ClientProperties {
    pub fn push(&mut self, key: String, value: String) {
        self.0.push((key, value));
    }

    /// Appends `other`'s properties after these: they win.
    pub fn extend(&mut self, other: &ClientProperties) {
        self.0.extend(other.0.iter().cloned());
    }

    /// The value given last for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Sets every property on `c`, after Landfall's own: they apply last.
    pub fn apply(&self, c: &mut ClientConfig) {
        for (k, v) in &self.0 {
            c.set(k, v);
        }
    }
}

/// One `key=value`, as `-X` takes it.
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err("expected key=value, e.g. -X security.protocol=SASL_SSL".into()),
    }
}

/// A property file: `key=value` lines; blank lines and lines starting with `#` are skipped.
/// Errors name the line (never its value, which may be a secret).
pub fn read_file(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let pair = parse_pair(line).map_err(|_| format!("line {} is not key=value", n + 1))?;
        out.push(pair);
    }
    Ok(out)
}

/// Why a raw property may not be set, if it may not: each one would break exactly-once or
/// contradict a typed flag.
pub fn refused(key: &str, value: &str) -> Option<&'static str> {
    let v = value.trim().to_ascii_lowercase();
    match key {
        "enable.auto.commit" | "enable.auto.offset.store" if v != "false" => {
            Some("Landfall commits offsets itself, only after the files have landed")
        }
        "isolation.level" if v != "read_committed" => {
            Some("Landfall reads read_committed only: aborted transactions must never land")
        }
        "auto.offset.reset" if v != "error" => Some(
            "a committed offset the log no longer has is an error, never a silent reset; \
             reset the group's offsets explicitly instead",
        ),
        "enable.partition.eof" if v != "true" => {
            Some("Landfall needs end-of-partition events to know a partition is caught up")
        }
        "enable.idempotence" if v != "true" => Some("the transactional producer needs idempotence"),
        "acks" | "request.required.acks" if v != "all" && v != "-1" => {
            Some("the transactional producer needs acks=all")
        }
        "transactional.id" => Some("set it with --transactional-id (producer only)"),
        "group.id" => Some("set it with --group"),
        "group.instance.id" => Some("set it with --instance-id"),
        "partition.assignment.strategy" => Some("set it with --assignment-strategy"),
        _ => None,
    }
}

/// Checks the raw properties with librdkafka itself (unknown names, bad values), without
/// creating a client. The message names the property, never a secret value.
pub fn check_with_librdkafka(raw: &ClientProperties) -> Result<(), String> {
    let mut c = ClientConfig::new();
    raw.apply(&mut c);
    match c.create_native_config() {
        Ok(_) => Ok(()),
        Err(rdkafka::error::KafkaError::ClientConfig(_, desc, key, value)) => {
            let desc = if is_secret(&key) && !value.is_empty() {
                desc.replace(&value, "***")
            } else {
                desc
            };
            Err(format!("{key}: {desc}"))
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_pairs_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(
            &path,
            "# kcat -F format\n\nbootstrap.servers = 127.0.0.1:9092\nsasl.password=hunter2\n",
        )
        .unwrap();
        let pairs = read_file(&path).unwrap();
        assert_eq!(
            pairs[0],
            ("bootstrap.servers".into(), "127.0.0.1:9092".into())
        );
        std::fs::write(&path, "ok=1\nnot a pair\n").unwrap();
        assert_eq!(read_file(&path).unwrap_err(), "line 2 is not key=value");
        assert!(parse_pair("=x").is_err() && parse_pair("x").is_err());

        let mut raw = ClientProperties::default();
        for (k, v) in pairs {
            raw.push(k, v);
        }
        let debug = format!("{raw:?}");
        assert!(
            !debug.contains("hunter2") && debug.contains("***"),
            "{debug}"
        );

        assert!(refused("enable.auto.commit", "true").is_some());
        assert!(refused("enable.auto.commit", "false").is_none());
        assert!(refused("isolation.level", "read_uncommitted").is_some());
        assert!(refused("auto.offset.reset", "earliest").is_some());
        assert!(refused("acks", "1").is_some());
        assert!(refused("client.id", "x").is_none());

        let mut bad = ClientProperties::default();
        bad.push("no.such.property".into(), "1".into());
        let e = check_with_librdkafka(&bad).unwrap_err();
        assert!(e.contains("no.such.property"), "{e}");
    }
}
