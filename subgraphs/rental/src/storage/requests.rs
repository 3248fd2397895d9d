//! Rent requests: one row per (customer, idempotency key), with the rental id it was
//! given and how far it got (`RequestState`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::domain::TextEnum;
use uuid::Uuid;

use crate::domain::RequestState;

diesel::table! {
    rent_requests (customer_id, idempotency_key) {
        customer_id -> Uuid,
        idempotency_key -> Text,
        request_hash -> Text,
        rental_id -> Uuid,
        state -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RentRequestRow {
    pub customer_id: Uuid,
    pub idempotency_key: String,
    pub request_hash: String,
    pub rental_id: Uuid,
    pub state: RequestState,
    pub updated_at: DateTime<Utc>,
}

type Columns = (
    rent_requests::customer_id,
    rent_requests::idempotency_key,
    rent_requests::request_hash,
    rent_requests::rental_id,
    rent_requests::state,
    rent_requests::updated_at,
);

const COLUMNS: Columns = (
    rent_requests::customer_id,
    rent_requests::idempotency_key,
    rent_requests::request_hash,
    rent_requests::rental_id,
    rent_requests::state,
    rent_requests::updated_at,
);

fn from_columns(row: (Uuid, String, String, Uuid, String, DateTime<Utc>)) -> QueryResult<RentRequestRow> {
    Ok(RentRequestRow {
        customer_id: row.0,
        idempotency_key: row.1,
        request_hash: row.2,
        rental_id: row.3,
        state: RequestState::parse(&row.4)
            .map_err(|unknown| diesel::result::Error::DeserializationError(unknown.to_string().into()))?,
        updated_at: row.5,
    })
}

/// Inserts a PENDING request unless one exists for this customer and key; returns
/// whether it was inserted, and the request as stored (the new one, or the earlier one).
pub async fn claim(
    connection: &mut AsyncPgConnection,
    customer_id: Uuid,
    idempotency_key: &str,
    request_hash: &str,
    rental_id: Uuid,
) -> QueryResult<(bool, RentRequestRow)> {
    // A new key (the usual case) costs one statement: the insert returns the row.
    let inserted = diesel::insert_into(rent_requests::table)
        .values((
            rent_requests::customer_id.eq(customer_id),
            rent_requests::idempotency_key.eq(idempotency_key),
            rent_requests::request_hash.eq(request_hash),
            rent_requests::rental_id.eq(rental_id),
            rent_requests::state.eq(RequestState::Pending.as_str()),
        ))
        .on_conflict_do_nothing()
        .returning(COLUMNS)
        .get_result(connection)
        .await
        .optional()?;
    if let Some(row) = inserted {
        return Ok((true, from_columns(row)?));
    }
    let row = rent_requests::table.find((customer_id, idempotency_key)).select(COLUMNS).first(connection).await?;
    Ok((false, from_columns(row)?))
}

/// The request for `rental_id`, if any.
pub async fn find(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<Option<RentRequestRow>> {
    let row = rent_requests::table
        .filter(rent_requests::rental_id.eq(rental_id))
        .select(COLUMNS)
        .first(connection)
        .await
        .optional()?;
    row.map(from_columns).transpose()
}

/// The request for `rental_id`, locked until the end of the transaction.
pub async fn lock(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<Option<RentRequestRow>> {
    let row = rent_requests::table
        .filter(rent_requests::rental_id.eq(rental_id))
        .select(COLUMNS)
        .for_update()
        .first(connection)
        .await
        .optional()?;
    row.map(from_columns).transpose()
}

/// Moves the request for `rental_id` from `from` to `to`; false if it was not in
/// `from`. The row is locked until the end of the transaction either way, and a
/// concurrent change (the reconciler taking it) is waited for and seen.
pub async fn change_state(
    connection: &mut AsyncPgConnection,
    rental_id: Uuid,
    from: RequestState,
    to: RequestState,
) -> QueryResult<bool> {
    let moved = diesel::update(
        rent_requests::table
            .filter(rent_requests::rental_id.eq(rental_id))
            .filter(rent_requests::state.eq(from.as_str())),
    )
    .set((rent_requests::state.eq(to.as_str()), rent_requests::updated_at.eq(Utc::now())))
    .execute(connection)
    .await?;
    Ok(moved == 1)
}

pub async fn set_state(connection: &mut AsyncPgConnection, rental_id: Uuid, state: RequestState) -> QueryResult<()> {
    diesel::update(rent_requests::table.filter(rent_requests::rental_id.eq(rental_id)))
        .set((rent_requests::state.eq(state.as_str()), rent_requests::updated_at.eq(Utc::now())))
        .execute(connection)
        .await?;
    Ok(())
}

/// Starts over under the same key after an abandoned attempt: a new rental id, since
/// the old one's charge has been called off for good.
pub async fn restart(
    connection: &mut AsyncPgConnection,
    customer_id: Uuid,
    idempotency_key: &str,
    request_hash: &str,
    new_rental_id: Uuid,
) -> QueryResult<bool> {
    let updated = diesel::update(
        rent_requests::table
            .find((customer_id, idempotency_key))
            .filter(rent_requests::state.eq(RequestState::Abandoned.as_str())),
    )
    .set((
        rent_requests::rental_id.eq(new_rental_id),
        rent_requests::request_hash.eq(request_hash),
        rent_requests::state.eq(RequestState::Pending.as_str()),
        rent_requests::updated_at.eq(Utc::now()),
    ))
    .execute(connection)
    .await?;
    Ok(updated == 1)
}

/// Requests the reconciler must finish: PENDING or VOIDING, untouched since before
/// `older_than` (a VOIDING one younger than that is still being called off by the
/// request that gave up on it).
pub async fn unfinished(
    connection: &mut AsyncPgConnection,
    older_than: DateTime<Utc>,
) -> QueryResult<Vec<RentRequestRow>> {
    let rows = rent_requests::table
        .filter(rent_requests::state.eq_any([RequestState::Pending.as_str(), RequestState::Voiding.as_str()]))
        .filter(rent_requests::updated_at.lt(older_than))
        .select(COLUMNS)
        .order(rent_requests::updated_at)
        .limit(100)
        .load(connection)
        .await?;
    rows.into_iter().map(from_columns).collect()
}
