//! Vigil's error type.
//!
//! Every error says whether trying again may succeed: a Lambda handler turns a retryable error
//! into a failed invocation (Lambda retries, then dead-letters), an HTTP caller gets a 5xx for
//! it and a 4xx for input that can never succeed.

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Result with Vigil's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration value or file is missing or invalid. Names the setting or file.
    #[error("configuration error: {0}")]
    Config(String),
    /// The input can never be processed; a retry would fail the same way.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// An AWS call failed.
    #[error("{service} {operation} failed: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        message: String,
        /// Throttling, a 5xx, a timeout or a connection failure: the same call may pass later.
        retryable: bool,
    },
    /// A receiver outside AWS (PagerDuty, a webhook) gave no answer. Names the endpoint's
    /// scheme and host only: a URL's path may hold a token.
    #[error("posting to {endpoint} failed: {message}")]
    Http {
        endpoint: String,
        message: String,
        /// No answer came (a refused or cut connection, a timeout): trying again may pass.
        retryable: bool,
    },
    /// A conditional write lost to another writer more often than the bound allows: the work is
    /// intact and may be tried again.
    #[error("lost race: {0}")]
    LostRace(String),
    /// A fault inside Vigil (state that cannot be serialized, an invariant broken): a bug, not
    /// the input's or AWS's doing.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Whether the same work may succeed when tried again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Aws {
                retryable: true,
                ..
            } | Error::Http {
                retryable: true,
                ..
            } | Error::LostRace(_)
        )
    }

    /// Wraps an AWS SDK error, classifying it as retryable or not.
    /// The response type is the one all SDK crates share (`aws-smithy-runtime-api`).
    pub fn aws<E>(
        service: &'static str,
        operation: &'static str,
        err: SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (message, retryable) = match &err {
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let code = ctx.err().code().unwrap_or("Unknown");
                let detail = ctx.err().message().unwrap_or("");
                let retryable = status >= 500
                    || status == 429
                    || code.contains("Throttl")
                    || code == "RequestLimitExceeded"
                    || code == "SlowDown"
                    || code == "ServiceUnavailable"
                    || code == "InternalError"
                    || code == "InternalFailure";
                (format!("{code} (HTTP {status}): {detail}"), retryable)
            }
            SdkError::TimeoutError(_) => ("request timed out".to_owned(), true),
            SdkError::DispatchFailure(e) => (format!("could not send the request: {e:?}"), true),
            SdkError::ResponseError(_) => ("the response could not be read".to_owned(), true),
            SdkError::ConstructionFailure(_) => {
                ("the request could not be built".to_owned(), false)
            }
            _ => (
                aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
                false,
            ),
        };
        Error::Aws {
            service,
            operation,
            message,
            retryable,
        }
    }
}

impl Error {
    /// The error type Lambda records for a failed invocation.
    pub fn error_type(&self) -> &'static str {
        match self {
            Error::Config(_) => "Vigil.Config",
            Error::InvalidInput(_) => "Vigil.InvalidInput",
            Error::Aws {
                retryable: true, ..
            } => "Vigil.AwsRetryable",
            Error::Aws { .. } => "Vigil.Aws",
            Error::Http { .. } => "Vigil.Http",
            Error::LostRace(_) => "Vigil.LostRace",
            Error::Internal(_) => "Vigil.Internal",
        }
    }
}

impl From<Error> for lambda_runtime::Diagnostic {
    fn from(e: Error) -> Self {
        lambda_runtime::Diagnostic {
            error_type: e.error_type().to_owned(),
            error_message: e.to_string(),
        }
    }
}
