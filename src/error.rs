//! One error type for every command, with the stage errors inside it, and what each means for
//! the process: its exit code, and whether running it again later may succeed unchanged.
//!
//! Exit codes: 0 success; 1 a failure that needs a person (and for `verify`, discrepancies
//! found); 2 bad usage or configuration; 3 Kafka could not be reached within
//! `--connect-timeout-secs` (retryable: a supervisor may simply try again).

use crate::bench::BenchError;
use crate::config::ConfigError;
use crate::consume::pipeline::PipelineError;
use crate::consume::ConsumeError;
use crate::ops::kafka::{KafkaSetupError, ScanError};
use crate::ops::metrics::BindError;
use crate::produce::producer::ProduceError;
use crate::readback::ReadError;
use crate::verify::VerifyError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Kafka(#[from] KafkaSetupError),
    #[error(transparent)]
    Produce(#[from] ProduceError),
    #[error(transparent)]
    Consume(#[from] ConsumeError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error("verify found {0} discrepancies")]
    Discrepancies(usize),
    #[error("{what}: {detail}")]
    Other { what: &'static str, detail: String },
}

impl Error {
    /// The process's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) => 2,
            _ if self.unreachable() => 3,
            _ => 1,
        }
    }

    /// Whether the same command may succeed later without any change: the broker could not
    /// be reached, or commits kept failing while the coordinator moved. Everything else needs
    /// a person (an identity mismatch, a full disk, a bad file, a bug).
    pub fn retryable(&self) -> bool {
        self.unreachable()
            || matches!(
                self,
                Error::Consume(ConsumeError::Pipeline(e)) if e.retryable()
            )
    }

    /// Kafka could not be reached at start-up, in whichever command.
    fn unreachable(&self) -> bool {
        let setup = match self {
            Error::Kafka(e)
            | Error::Produce(ProduceError::Setup(e))
            | Error::Consume(ConsumeError::Setup(e))
            | Error::Scan(ScanError::Setup(e))
            | Error::Verify(VerifyError::Scan(ScanError::Setup(e)))
            | Error::Bench(BenchError::Setup(e)) => e,
            _ => return false,
        };
        matches!(setup, KafkaSetupError::Unreachable { .. })
    }
}

impl PipelineError {
    /// See [`Error::retryable`].
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            PipelineError::Commit(_) | PipelineError::CommittedOffsetsUnavailable
        )
    }
}

/// What a caught panic said, for an error message.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable() -> KafkaSetupError {
        KafkaSetupError::Unreachable {
            brokers: "127.0.0.1:1".into(),
            waited_secs: 3,
            last_error: "connection refused".into(),
        }
    }

    #[test]
    fn exit_codes_tell_usage_unreachable_kafka_and_discrepancies_apart() {
        let usage = Error::Config(ConfigError { problems: vec![] });
        assert_eq!(usage.exit_code(), 2);
        for e in [
            Error::Kafka(unreachable()),
            Error::Consume(ConsumeError::Setup(unreachable())),
            Error::Verify(VerifyError::Scan(ScanError::Setup(unreachable()))),
        ] {
            assert_eq!((e.exit_code(), e.retryable()), (3, true), "{e}");
        }
        let missing = Error::Kafka(KafkaSetupError::TopicMissing {
            topic: "t".into(),
            brokers: "b".into(),
        });
        assert_eq!((missing.exit_code(), missing.retryable()), (1, false));
        let found = Error::Discrepancies(4);
        assert_eq!((found.exit_code(), found.retryable()), (1, false));
        let worker = Error::Consume(ConsumeError::Pipeline(PipelineError::WorkerStopped));
        assert_eq!((worker.exit_code(), worker.retryable()), (1, false));
    }
}
