//! What the router and the subgraphs share about a caller, and nothing else: who is
//! calling (a verified token's [`Identity`]) and the error codes every answer uses
//! ([`ErrorCode`]). The router needs these to refuse a request in the subgraphs' own
//! words; it needs none of their database or broker plumbing, which lives in
//! `subgraph-kit` and `event-bus`.
//!
//! - [`token`]: identities, and signing tokens with a P-256 key;
//! - [`keys`]: the public keys a verifier trusts (a JWKS from a URL or a file, rotated);
//! - [`verify`]: checking a token against them, the same way in every process.

mod codes;
pub mod keys;
pub mod token;
pub mod verify;

pub use codes::ErrorCode;
pub use keys::JwksSource;
pub use token::{AuthError, DEFAULT_AUDIENCE, DEV_CUSTOMER_ID, Identity, Role, TokenIssuer};
pub use verify::{TokenSettings, TokenVerifier};
