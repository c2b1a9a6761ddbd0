//! The topic ID (KIP-516): what tells a topic from another one created later under the same
//! name.

use super::*;

/// A topic's Kafka topic ID (KIP-516), in the base64 form Kafka's tools print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicIdLookup {
    Found(String),
    /// The broker does not give topic IDs (Kafka before 2.8): nothing to record or check.
    NotSupported,
    Missing,
    Failed(String),
}

/// Asks the cluster for `topic`'s topic ID with the Admin API's DescribeTopics, on the
/// handle of any client (rdkafka 0.39 does not wrap that call, so it goes to librdkafka
/// directly). A topic deleted and created again under the same name gets a new ID: that is
/// how a restart tells the old topic's commits and files from the new topic's records.
pub fn topic_id<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> TopicIdLookup {
    use rdkafka::bindings as rd;
    use std::ffi::CString;

    let Ok(name) = CString::new(topic) else {
        return TopicIdLookup::Failed(format!("topic name {topic:?} has a NUL byte"));
    };
    let timeout_ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: every object made here is destroyed before returning, and nothing borrowed from
    // the result event outlives it (strings are copied out first).
    unsafe {
        let rk = client.native_ptr();
        let queue = rd::rd_kafka_queue_new(rk);
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        );
        let mut errstr = [0 as std::os::raw::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let mut names = [name.as_ptr()];
        let topics = rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1);
        rd::rd_kafka_DescribeTopics(rk, topics, options, queue);
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let answer = if event.is_null() {
            TopicIdLookup::Failed(format!("no answer to DescribeTopics within {timeout:?}"))
        } else if rd::rd_kafka_event_error(event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            TopicIdLookup::Failed(cstr(rd::rd_kafka_event_error_string(event)))
        } else {
            described(event)
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_TopicCollection_destroy(topics);
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_queue_destroy(queue);
        answer
    }
}

/// The topic's ID for a run that records it: retried (briefly) while the lookup fails. None
/// when the cluster gives no topic IDs, or cannot answer DescribeTopics at all (older
/// brokers): the run then cannot tell a recreated topic from the old one, and says so.
pub fn current_topic_id<C: ClientContext>(
    client: &Client<C>,
    settings: &KafkaSettings,
) -> Result<Option<String>, KafkaSetupError> {
    let started = Instant::now();
    let mut last = String::new();
    for attempt in 0..5 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(200 * attempt));
        }
        let remaining = settings.connect_timeout.saturating_sub(started.elapsed());
        match topic_id(
            client,
            &settings.topic,
            remaining.clamp(Duration::from_secs(1), Duration::from_secs(10)),
        ) {
            TopicIdLookup::Found(id) => return Ok(Some(id)),
            TopicIdLookup::NotSupported => {
                warn!(topic = %settings.topic, "the cluster gives no topic IDs (Kafka before 2.8): a topic deleted and created again cannot be told from the old one");
                return Ok(None);
            }
            TopicIdLookup::Missing => {
                return Err(KafkaSetupError::TopicMissing {
                    topic: settings.topic.clone(),
                    brokers: settings.brokers.clone(),
                })
            }
            TopicIdLookup::Failed(e) => last = e,
        }
    }
    warn!(topic = %settings.topic, error = %last, "could not read the topic's ID (DescribeTopics); a topic deleted and created again cannot be told from the old one");
    Ok(None)
}

/// A string librdkafka returned, copied out (empty for NULL).
fn cstr(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: librdkafka returns NUL-terminated strings that live as long as the object
        // they come from, which the caller keeps alive.
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned()
    }
}

/// The answer in a successful DescribeTopics result event.
///
/// # Safety
/// `event` is a live DescribeTopics result event without an error.
unsafe fn described(event: *mut rdkafka::bindings::rd_kafka_event_t) -> TopicIdLookup {
    use rdkafka::bindings as rd;
    let result = rd::rd_kafka_event_DescribeTopics_result(event);
    let mut n = 0usize;
    let descs = rd::rd_kafka_DescribeTopics_result_topics(result, &mut n);
    if descs.is_null() || n == 0 {
        TopicIdLookup::Failed("DescribeTopics returned no topic".into())
    } else {
        let desc = *descs;
        let err = rd::rd_kafka_TopicDescription_error(desc);
        let code = if err.is_null() {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        } else {
            rd::rd_kafka_error_code(err)
        };
        match code {
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
                let id = rd::rd_kafka_TopicDescription_topic_id(desc);
                let zero = id.is_null()
                    || (rd::rd_kafka_Uuid_most_significant_bits(id) == 0
                        && rd::rd_kafka_Uuid_least_significant_bits(id) == 0);
                if zero {
                    TopicIdLookup::NotSupported
                } else {
                    TopicIdLookup::Found(cstr(rd::rd_kafka_Uuid_base64str(id)))
                }
            }
            rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => {
                TopicIdLookup::Missing
            }
            _ => TopicIdLookup::Failed(cstr(rd::rd_kafka_error_string(err))),
        }
    }
}
