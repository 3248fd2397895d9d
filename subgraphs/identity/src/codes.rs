//! The codes every error carries in `extensions.code`, the same from the router and
//! from each subgraph. docs/errors.md describes each for people.

use std::fmt;

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
    /// A delivery cannot be completed yet: inventory has not confirmed a unit for it
    /// (it is short of stock, or has not answered yet).
    WaitingForStock,
    /// A dependency of ours (the service's database) does not answer right now. Retry
    /// the same request after `extensions.retryAfterSeconds`; retrying never does a
    /// thing twice (`rent` with the same `idempotencyKey` returns the same rental).
    ServiceUnavailable,
    /// The caller sent more mutations, or started more subscriptions, than the router
    /// allows one client in a minute; nothing was done. Try again after
    /// `extensions.retryAfterSeconds` (also the `Retry-After` header).
    RateLimited,
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
            ErrorCode::WaitingForStock => "WAITING_FOR_STOCK",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::Internal => "INTERNAL_SERVER_ERROR",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
