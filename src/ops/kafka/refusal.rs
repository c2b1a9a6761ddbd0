//! Refusals by the brokers that no retry can fix: a failed login, a broker certificate the
//! client does not trust, a missing ACL. Each ends the command within seconds with a message
//! naming what was refused, for which resource, and the way out. A broker that is merely
//! unreachable is not a refusal: start-up keeps waiting for it.
//!
//! librdkafka reports login and TLS failures only through the client's error callback, and
//! keeps retrying: `note` keeps the first one, and the loops that wait for Kafka ask `noted`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::KafkaSettings;

/// What the client was doing when the broker refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doing<'a> {
    /// Looking the topic up (every command).
    Describing,
    /// Creating the topic (`produce --create-topic`, the benchmarks).
    Creating,
    /// Reading the topic, in a consumer group (or, for `verify`, reading its offsets); ""
    /// for a reader outside any group.
    Reading { group: &'a str },
    /// Writing the topic in transactions.
    Writing { transactional_id: &'a str },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "Kafka refused the login as {principal}: {detail}. Check the user name and password \
         (--sasl-username, --sasl-password or --sasl-password-file, or sasl.username and \
         sasl.password in the Kafka properties) and the mechanism (--sasl-mechanism)"
    )]
    Authentication { principal: String, detail: String },
    #[error(
        "the broker's TLS certificate is not trusted: {detail}. Point --ssl-ca-location \
         (ssl.ca.location) at the CA that signed it"
    )]
    Tls { detail: String },
    #[error("not authorised to {what} as {principal}: add ACL `{acl}`")]
    Denied {
        what: String,
        principal: String,
        acl: String,
    },
}

static NOTED: Mutex<Option<(RDKafkaErrorCode, String)>> = Mutex::new(None);
static ANY: AtomicBool = AtomicBool::new(false);

/// The refusal code of a client error, if it is one.
fn refusal_code(error: &KafkaError, reason: &str) -> Option<RDKafkaErrorCode> {
    use RDKafkaErrorCode as C;
    let code = error.rdkafka_error_code()?;
    match code {
        C::Authentication | C::SaslAuthenticationFailed => Some(code),
        C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::TransactionalIdAuthorizationFailed
        | C::ClusterAuthorizationFailed => Some(code),
        // Only an untrusted certificate: other TLS failures (a broker closing the connection
        // mid-handshake while it restarts) may pass. It is sometimes reported as a
        // transport failure rather than as an SSL error.
        _ if reason.contains("certificate verify failed") => Some(C::SSL),
        _ => None,
    }
}

/// Keeps the first refusal reported by a client's error callback.
pub fn note(error: &KafkaError, reason: &str) {
    if let Some(code) = refusal_code(error, reason) {
        keep(code, reason);
    }
}

fn keep(code: RDKafkaErrorCode, detail: &str) {
    let mut noted = NOTED.lock().unwrap_or_else(|e| e.into_inner());
    if noted.is_none() {
        *noted = Some((code, detail.to_string()));
        ANY.store(true, Ordering::Release);
    }
}

/// Keeps the first refused login or TLS handshake that a librdkafka log line reports.
pub fn note_log(message: &str) {
    let code = if message.contains("SASL authentication error") {
        RDKafkaErrorCode::Authentication
    } else if message.contains("certificate verify failed") {
        RDKafkaErrorCode::SSL
    } else {
        return;
    };
    // "[thrd:sasl_ssl://host:port/bootstrap]: sasl_ssl://host:port/bootstrap: ..." names the
    // broker twice; keep the second.
    let message = match message.split_once("]: ") {
        Some((thread, rest)) if thread.starts_with("[thrd:") => rest,
        _ => message,
    };
    keep(code, message);
}

/// The refusal a client reported since start-up, if any, as what it means for `doing`.
pub fn noted(settings: &KafkaSettings, doing: Doing<'_>) -> Option<Refusal> {
    if !ANY.load(Ordering::Acquire) {
        return None;
    }
    let noted = NOTED.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let (code, detail) = noted?;
    refusal(code, &detail, settings, doing)
}

/// The refusal behind `error`, or else one a client noted since start-up, if any: no retry
/// can fix it.
pub fn behind(
    error: Option<&KafkaError>,
    settings: &KafkaSettings,
    doing: Doing<'_>,
) -> Option<Refusal> {
    error
        .and_then(|e| of_error(e, settings, doing))
        .or_else(|| noted(settings, doing))
}

/// What an error code means as a refusal while `doing`, if it is one.
fn of_error(error: &KafkaError, settings: &KafkaSettings, doing: Doing<'_>) -> Option<Refusal> {
    let code = refusal_code(error, &error.to_string())?;
    refusal(code, &error.to_string(), settings, doing)
}

/// What `code` means as a refusal while `doing`.
pub fn refusal(
    code: RDKafkaErrorCode,
    detail: &str,
    settings: &KafkaSettings,
    doing: Doing<'_>,
) -> Option<Refusal> {
    use RDKafkaErrorCode as C;
    let principal = principal(settings);
    let topic = &settings.topic;
    let (what, operations, resource) = match code {
        C::Authentication | C::SaslAuthenticationFailed => {
            return Some(Refusal::Authentication {
                principal,
                detail: detail.to_string(),
            })
        }
        C::SSL => {
            return Some(Refusal::Tls {
                detail: detail.to_string(),
            })
        }
        C::TopicAuthorizationFailed => {
            let (what, operations) = topic_access(topic, doing);
            (what, operations, format!("--topic {topic}"))
        }
        C::GroupAuthorizationFailed => {
            let group = match doing {
                Doing::Reading { group } => group,
                _ => "?",
            };
            (
                format!("read group {group:?}"),
                "Read --operation Describe",
                format!("--group {group}"),
            )
        }
        C::TransactionalIdAuthorizationFailed => {
            let id = match doing {
                Doing::Writing { transactional_id } => transactional_id,
                _ => "?",
            };
            (
                format!("write with transactional id {id:?}"),
                "Write --operation Describe",
                format!("--transactional-id {id}"),
            )
        }
        C::ClusterAuthorizationFailed => (
            "write idempotently (cluster IdempotentWrite)".to_string(),
            "IdempotentWrite",
            "--cluster".to_string(),
        ),
        _ => return None,
    };
    let acl = format!(
        "kafka-acls --bootstrap-server {} --add --allow-principal {principal} --operation \
         {operations} {resource}",
        settings.brokers
    );
    Some(Refusal::Denied {
        what,
        principal,
        acl,
    })
}

/// What was refused on the topic, and the operations that grant it, for what the client was
/// doing.
fn topic_access(topic: &str, doing: Doing<'_>) -> (String, &'static str) {
    match doing {
        Doing::Describing => (format!("describe topic {topic:?}"), "Describe"),
        Doing::Creating => (format!("create topic {topic:?}"), "Create"),
        Doing::Reading { group: "" } => {
            (format!("read topic {topic:?}"), "Read --operation Describe")
        }
        Doing::Reading { group } => (
            format!("read topic {topic:?} (group {group:?})"),
            "Read --operation Describe",
        ),
        Doing::Writing { .. } => (
            format!("write to topic {topic:?}"),
            "Write --operation Describe",
        ),
    }
}

/// The principal the brokers see, as far as the client knows it.
fn principal(settings: &KafkaSettings) -> String {
    match settings.properties.get("sasl.username") {
        Some(user) => format!("User:{user}"),
        None if settings
            .properties
            .get("ssl.certificate.location")
            .is_some() =>
        {
            "the client certificate's principal".to_string()
        }
        None => "User:ANONYMOUS".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_names_the_resource_and_the_acl() {
        let mut settings = KafkaSettings {
            brokers: "b:9096".into(),
            topic: "views".into(),
            connect_timeout: std::time::Duration::from_secs(1),
            properties: Default::default(),
        };
        settings
            .properties
            .push("sasl.username".into(), "landfall".into());
        let read = Doing::Reading { group: "g1" };
        let r = refusal(C::TopicAuthorizationFailed, "", &settings, read).unwrap();
        assert_eq!(
            r.to_string(),
            "not authorised to read topic \"views\" (group \"g1\") as User:landfall: add ACL \
             `kafka-acls --bootstrap-server b:9096 --add --allow-principal User:landfall \
             --operation Read --operation Describe --topic views`"
        );
        let r = refusal(C::GroupAuthorizationFailed, "", &settings, read).unwrap();
        assert!(r.to_string().contains("read group \"g1\""), "{r}");
        let w = Doing::Writing {
            transactional_id: "t1",
        };
        let r = refusal(C::TransactionalIdAuthorizationFailed, "", &settings, w).unwrap();
        assert!(r.to_string().contains("--transactional-id t1"), "{r}");
        let r = refusal(C::Authentication, "bad", &settings, w).unwrap();
        assert!(r.to_string().contains("login as User:landfall: bad"), "{r}");
        assert!(refusal(C::BrokerTransportFailure, "", &settings, w).is_none());
    }

    use RDKafkaErrorCode as C;
}
