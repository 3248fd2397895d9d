//! Errors a person can act on. Every failure a client sees carries one of these codes
//! in `extensions.code` and a sentence saying what went wrong and, where it helps, what
//! to do instead. Internal details (SQL, stack traces) are logged, never returned.

use std::fmt;

use async_graphql::ErrorExtensions;
pub use identity::ErrorCode;

/// An error meant for the caller: a code and a human sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// For PAYMENT_UNAVAILABLE, SERVICE_UNAVAILABLE and WAITING_FOR_STOCK: when a retry
    /// may succeed.
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

    /// Our database does not answer: the caller may retry in a moment.
    pub fn database_unavailable(cause: impl fmt::Display) -> Self {
        // Debug only: the outage itself is logged once by the background tasks that hit it.
        tracing::debug!(%cause, "database unavailable");
        let mut error = Self::new(
            ErrorCode::ServiceUnavailable,
            "the service cannot reach its database right now; try again in 2 seconds (retrying the same request is safe)",
        );
        error.retry_after_seconds = Some(2);
        error
    }

    /// The same error, with when to retry.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_seconds = Some(seconds);
        self
    }
}

/// True when a database error means the database could not be reached or the
/// connection broke (an outage), rather than a problem with the statement or the data.
pub fn is_outage(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind, Error};
    match error {
        Error::DatabaseError(DatabaseErrorKind::UnableToSendCommand | DatabaseErrorKind::ClosedConnection, _) => true,
        // SQLSTATE class 57 (operator intervention: admin shutdown, crash shutdown,
        // cannot connect now) and 08 (connection exceptions) arrive as Unknown.
        Error::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message();
            message.contains("terminating connection")
                || message.contains("the database system is")
                || message.contains("connection")
        }
        Error::BrokenTransactionManager => true,
        _ => false,
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(error: diesel::result::Error) -> Self {
        if is_outage(&error) {
            ApiError::database_unavailable(format!("database: {error}"))
        } else {
            ApiError::internal(format!("database: {error}"))
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        // No connection in time, or none could be opened: either way the database is
        // out of reach for now.
        ApiError::database_unavailable(format!("database pool: {error}"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
