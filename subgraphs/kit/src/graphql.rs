//! GraphQL helpers every subgraph uses the same way: reading the caller's identity,
//! parsing ids, and cursor pagination (Relay connections).

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, OutputType};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::auth::Identity;
use crate::error::ApiError;

/// The verified caller. Requests without one never reach a resolver, so this only fails
/// if a schema is executed outside the server (a bug), which then reads as unauthenticated.
pub fn identity<'a>(ctx: &Context<'a>) -> Result<&'a Identity, ApiError> {
    ctx.data_opt::<Identity>().ok_or_else(|| ApiError::unauthenticated("authentication required"))
}

/// The caller, who must be an operator (company staff).
pub fn require_operator<'a>(ctx: &Context<'a>, action: &str) -> Result<&'a Identity, ApiError> {
    let identity = identity(ctx)?;
    if identity.is_operator() { Ok(identity) } else { Err(ApiError::forbidden(format!("only operators may {action}"))) }
}

/// Parses a GraphQL `ID` that names a `what` (e.g. "product"): ids are UUIDs.
pub fn parse_id(id: &ID, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id.as_str()).map_err(|_| {
        ApiError::bad_input(format!(
            "{:?} is not a valid {what} id: ids look like 0192f1a4-7c3e-7d1a-9b2e-1f6c3a5d8e90",
            truncate(id.as_str(), 64)
        ))
    })
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

pub const DEFAULT_PAGE_SIZE: i32 = 20;
pub const MAX_PAGE_SIZE: i32 = 100;

/// A validated page request: at most `size` items after the `after` key.
/// Keys are UUIDv7, so ordering by key is ordering by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub size: i64,
    pub after: Option<Uuid>,
}

impl PageRequest {
    pub fn parse(first: Option<i32>, after: Option<&str>) -> Result<Self, ApiError> {
        let size = first.unwrap_or(DEFAULT_PAGE_SIZE);
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(ApiError::bad_input(format!("first must be between 1 and {MAX_PAGE_SIZE}, got {size}")));
        }
        let after = after.map(decode_cursor).transpose()?;
        Ok(Self { size: i64::from(size), after })
    }

    /// How many rows to fetch: one more than the page, to learn whether another follows.
    pub fn fetch_limit(&self) -> i64 {
        self.size + 1
    }
}

pub fn encode_cursor(key: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

pub fn decode_cursor(cursor: &str) -> Result<Uuid, ApiError> {
    URL_SAFE_NO_PAD.decode(cursor).ok().and_then(|bytes| Uuid::from_slice(&bytes).ok()).ok_or_else(|| {
        ApiError::bad_input(format!(
            "{:?} is not a cursor from this list: pass an endCursor you received",
            truncate(cursor, 64)
        ))
    })
}

/// Builds a connection from up to `page.fetch_limit()` rows in page order.
pub fn connection<N: OutputType>(
    page: &PageRequest,
    mut rows: Vec<N>,
    key_of: impl Fn(&N) -> Uuid,
) -> Connection<String, N> {
    let has_next_page = rows.len() as i64 > page.size;
    rows.truncate(page.size as usize);
    let mut connection = Connection::new(page.after.is_some(), has_next_page);
    connection.edges.extend(rows.into_iter().map(|node| Edge::new(encode_cursor(key_of(&node)), node)));
    connection
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let key = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(key)), Ok(key));
        assert_eq!(decode_cursor("not-a-cursor").unwrap_err().code, crate::ErrorCode::BadUserInput);
    }

    #[test]
    fn page_sizes_outside_the_range_are_refused() {
        assert_eq!(PageRequest::parse(None, None).unwrap().size, 20);
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(101), None).is_err());
        assert_eq!(PageRequest::parse(Some(100), None).unwrap().fetch_limit(), 101);
    }

    #[test]
    fn malformed_ids_get_a_readable_error() {
        let error = parse_id(&ID::from("abc"), "product").unwrap_err();
        assert_eq!(error.code, crate::ErrorCode::BadUserInput);
        assert!(error.message.contains("not a valid product id"));
    }
}
