//! Errors a person can act on. Every failure a client sees carries one of these codes
//! in `extensions.code` and a sentence saying what went wrong and, where it helps, what
//! to do instead. Internal details (SQL, stack traces) are logged, never returned.

use std::fmt;

use async_graphql::ErrorExtensions;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// No valid identity: missing, malformed, expired or forged token.
    Unauthenticated,
    /// Valid identity, but not allowed to do this.
    Forbidden,
    /// The thing named does not exist (or is not visible to this caller).
    NotFound,
    /// The input is invalid; nothing was changed.
    BadUserInput,
    /// The request conflicts with the current state (e.g. an illegal state transition).
    Conflict,
    /// The card was declined; nothing was charged and nothing was created.
    PaymentDeclined,
    /// Payment cannot be reached right now; nothing was created. Try again later
    /// (`extensions.retryAfterSeconds`).
    PaymentUnavailable,
    /// An idempotency key was used again with different input.
    IdempotencyKeyReused,
    /// Something failed on our side; the message carries no internals.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::PaymentDeclined => "PAYMENT_DECLINED",
            ErrorCode::PaymentUnavailable => "PAYMENT_UNAVAILABLE",
            ErrorCode::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            ErrorCode::Internal => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error meant for the caller: a code and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// For PAYMENT_UNAVAILABLE: when a retry may succeed.
    pub retry_after_seconds: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_seconds: None }
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadUserInput, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// Logs the real cause and returns a generic message: callers cannot act on our
    /// internals, and they must not leak.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(ErrorCode::Internal, "something went wrong on our side; please try again")
    }
}

// ApiError deliberately does not implement Display: async-graphql converts any Display
// type into an error *without* extensions, and a `?` would then silently drop the code.
// The conversion below is the only way to a GraphQL error, and it keeps the code.
impl From<ApiError> for async_graphql::Error {
    fn from(error: ApiError) -> Self {
        error.into_graphql()
    }
}

impl ApiError {
    pub fn into_graphql(self) -> async_graphql::Error {
        let code = self.code.as_str();
        let retry_after = self.retry_after_seconds;
        async_graphql::Error::new(self.message).extend_with(|_, extensions| {
            extensions.set("code", code);
            if let Some(seconds) = retry_after {
                extensions.set("retryAfterSeconds", seconds);
            }
        })
    }

    /// The same error with another sentence.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Payment is down or refusing calls: try again after `retry_after`.
    pub fn payment_unavailable(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after.as_secs().max(1);
        let mut error = Self::new(
            ErrorCode::PaymentUnavailable,
            format!(
                "payment is unavailable right now, so the rental was not created \
                 (anything charged is refunded automatically); try again in {seconds} seconds"
            ),
        );
        error.retry_after_seconds = Some(seconds);
        error
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        ApiError::internal(format!("database: {error}"))
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        ApiError::internal(format!("database pool: {error}"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
