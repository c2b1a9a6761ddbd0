//! The security flags (`--security-protocol`, `--sasl-*`, `--ssl-*`) as librdkafka properties,
//! checked with each other and against the raw properties. A secret value is never shown.

use std::path::Path;

use super::super::Problems;
use crate::cli::{Secret, SecurityArgs};
use crate::ops::kafka::{properties::is_secret, ClientProperties};

const PROTOCOLS: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
const MECHANISMS: [&str; 4] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"];

/// The properties the security flags stand for, in librdkafka's names.
pub(super) fn properties(args: &SecurityArgs, problems: &mut Problems) -> ClientProperties {
    let mut p = ClientProperties::default();
    choices(args, &mut p, problems);
    if let Some(v) = &args.sasl_username {
        p.push("sasl.username".into(), v.clone());
    }
    if let Some(v) = password(args, problems) {
        p.push("sasl.password".into(), v);
    }
    let files = [
        (
            "--ssl-ca-location",
            "LANDFALL_SSL_CA_LOCATION",
            "ssl.ca.location",
            &args.ssl_ca_location,
        ),
        (
            "--ssl-certificate-location",
            "LANDFALL_SSL_CERTIFICATE_LOCATION",
            "ssl.certificate.location",
            &args.ssl_certificate_location,
        ),
        (
            "--ssl-key-location",
            "LANDFALL_SSL_KEY_LOCATION",
            "ssl.key.location",
            &args.ssl_key_location,
        ),
    ];
    for (flag, env, key, path) in files {
        if let Some(path) = path {
            if let Err(why) = readable(path) {
                problems.push(flag, env, path.display(), &why);
            }
            p.push(key.into(), path.to_string_lossy().into_owned());
        }
    }
    if args.ssl_certificate_location.is_some() != args.ssl_key_location.is_some() {
        problems.flag(
            "--ssl-certificate-location / --ssl-key-location",
            "only one given",
            "mutual TLS needs both the client certificate and its key",
        );
    }
    if let Some(Secret(v)) = &args.ssl_key_password {
        if args.ssl_key_location.is_none() {
            problems.flag(
                "--ssl-key-password",
                "***",
                "given without --ssl-key-location",
            );
        }
        p.push("ssl.key.password".into(), v.clone());
    }
    p
}

/// `--security-protocol` and `--sasl-mechanism`: one of their values, in librdkafka's spelling.
fn choices(args: &SecurityArgs, p: &mut ClientProperties, problems: &mut Problems) {
    let named = [
        (
            "--security-protocol",
            "LANDFALL_SECURITY_PROTOCOL",
            "security.protocol",
            &args.security_protocol,
            &PROTOCOLS,
        ),
        (
            "--sasl-mechanism",
            "LANDFALL_SASL_MECHANISM",
            "sasl.mechanisms",
            &args.sasl_mechanism,
            &MECHANISMS,
        ),
    ];
    for (flag, env, key, value, allowed) in named {
        let Some(v) = value else { continue };
        match allowed.iter().find(|x| x.eq_ignore_ascii_case(v.trim())) {
            Some(x) => p.push(key.into(), x.to_string()),
            None => problems.push(
                flag,
                env,
                format!("{v:?}"),
                &format!("expected one of {}", allowed.join(", ")),
            ),
        }
    }
}

/// `--sasl-password` or the first line of `--sasl-password-file`, not both.
fn password(args: &SecurityArgs, problems: &mut Problems) -> Option<String> {
    match (&args.sasl_password, &args.sasl_password_file) {
        (Some(_), Some(_)) => {
            problems.flag(
                "--sasl-password / --sasl-password-file",
                "both given",
                "give one",
            );
            None
        }
        (Some(Secret(v)), None) => Some(v.clone()),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(text) => {
                let line = text.lines().next().unwrap_or("").to_string();
                if line.is_empty() {
                    problems.push(
                        "--sasl-password-file",
                        "LANDFALL_SASL_PASSWORD_FILE",
                        path.display(),
                        "the file's first line is empty",
                    );
                }
                Some(line)
            }
            Err(e) => {
                problems.push(
                    "--sasl-password-file",
                    "LANDFALL_SASL_PASSWORD_FILE",
                    path.display(),
                    &format!("cannot read it: {e}"),
                );
                None
            }
        },
        (None, None) => None,
    }
}

fn readable(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => std::fs::File::open(path)
            .map(drop)
            .map_err(|e| format!("cannot read it: {e}")),
        Err(e) => Err(format!("cannot read it: {e}")),
    }
}

/// The flag that sets a property, for messages.
fn flag_of(key: &str) -> &'static str {
    match key {
        "security.protocol" => "--security-protocol",
        "sasl.mechanisms" => "--sasl-mechanism",
        "sasl.username" => "--sasl-username",
        "sasl.password" => "--sasl-password(-file)",
        "ssl.ca.location" => "--ssl-ca-location",
        "ssl.certificate.location" => "--ssl-certificate-location",
        "ssl.key.location" => "--ssl-key-location",
        _ => "--ssl-key-password",
    }
}

/// librdkafka's other name for a property, if it has one.
fn alias(key: &str) -> &str {
    match key {
        "sasl.mechanism" => "sasl.mechanisms",
        other => other,
    }
}

/// A raw property that sets what a flag sets, to another value, is a contradiction: which
/// one was meant is not for Landfall to guess.
pub(super) fn check_against_raw(
    flags: &ClientProperties,
    raw: &ClientProperties,
    problems: &mut Problems,
) {
    for (key, value) in flags.iter() {
        let other = raw.iter().filter(|(k, _)| alias(k) == key).last();
        if let Some((k, v)) = other {
            if !v.eq_ignore_ascii_case(value) {
                let shown = if is_secret(k) { "***" } else { v };
                problems.flag(
                    flag_of(key),
                    if is_secret(key) { "***" } else { value },
                    &format!("contradicts {k}={shown} in the Kafka properties; give one"),
                );
            }
        }
    }
}

/// SASL settings with a protocol that does not use SASL are silently ignored by librdkafka:
/// the client would connect without authenticating. Refuse that instead.
pub(super) fn check_sasl_protocol(all: &ClientProperties, problems: &mut Problems) {
    let protocol = all
        .get("security.protocol")
        .unwrap_or("plaintext")
        .to_ascii_lowercase();
    let sasl = all
        .iter()
        .find(|(k, _)| k.starts_with("sasl."))
        .map(|(k, _)| k.to_string());
    if let Some(key) = sasl {
        if !protocol.starts_with("sasl_") {
            problems.flag(
                "--security-protocol",
                &protocol,
                &format!(
                    "{key} is set, but SASL is used only with sasl_ssl or sasl_plaintext; \
                     set --security-protocol sasl_ssl"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(args: &SecurityArgs, raw: &[(&str, &str)]) -> (ClientProperties, Vec<String>) {
        let mut p = Problems::default();
        let mut props = properties(args, &mut p);
        let mut r = ClientProperties::default();
        for (k, v) in raw {
            r.push(k.to_string(), v.to_string());
        }
        check_against_raw(&props, &r, &mut p);
        props.extend(&r);
        check_sasl_protocol(&props, &mut p);
        (
            props,
            p.finish(()).err().map(|e| e.problems).unwrap_or_default(),
        )
    }

    #[test]
    fn flags_become_properties_and_contradictions_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "hunter2\n").unwrap();
        let args = SecurityArgs {
            security_protocol: Some("SASL_SSL".into()),
            sasl_mechanism: Some("scram-sha-512".into()),
            sasl_username: Some("landfall".into()),
            sasl_password_file: Some(pw.clone()),
            ssl_ca_location: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let (props, problems) = problems_of(&args, &[]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(props.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(props.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(props.get("sasl.password"), Some("hunter2"));

        let (_, problems) = problems_of(
            &args,
            &[("sasl.mechanism", "PLAIN"), ("sasl.password", "other")],
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("--sasl-mechanism") && problems[0].contains("PLAIN"));
        assert!(!problems.join(" ").contains("hunter2") && !problems.join(" ").contains("other"));

        let plain = SecurityArgs {
            sasl_username: Some("u".into()),
            sasl_password: Some(Secret("p".into())),
            sasl_password_file: Some(pw),
            ..Default::default()
        };
        let (_, problems) = problems_of(&plain, &[]);
        assert!(
            problems.iter().any(|p| p.contains("both given")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.contains("sasl_ssl or sasl_plaintext")),
            "{problems:?}"
        );
    }
}
