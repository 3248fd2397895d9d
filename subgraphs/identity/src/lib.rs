//! What the router and the subgraphs share about a caller, and nothing else: who is
//! calling (a verified token's [`Identity`]) and the error codes every answer uses
//! ([`ErrorCode`]). The router needs these to refuse a request in the subgraphs' own
//! words; it needs none of their database or broker plumbing, which lives in
//! `subgraph-kit` and `event-bus`.

mod codes;
pub mod token;

pub use codes::ErrorCode;
pub use token::{
    AuthError, DEV_CUSTOMER_ID, DEV_JWT_SECRET, ISSUER, Identity, Role, TokenIssuer, TokenVerifier,
    jwt_secret_from_env, warn_if_dev_secret,
};
