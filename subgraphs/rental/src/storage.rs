//! Rentals in PostgreSQL.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::db::Connection;
use subgraph_kit::graphql::PageRequest;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::RentalStatus;

diesel::table! {
    rentals (id) {
        id -> Uuid,
        customer_id -> Uuid,
        product_id -> Uuid,
        months -> Int4,
        monthly_fee -> Int4,
        delivery_address -> Text,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        payment_id -> Uuid,
    }
}

diesel::table! {
    rental_timeline (rental_id, kind) {
        event_id -> Uuid,
        rental_id -> Uuid,
        kind -> Text,
        at -> Timestamptz,
    }
}

diesel::table! {
    catalog (product_id) {
        product_id -> Uuid,
        name -> Text,
        monthly_fee -> Int4,
        updated_at -> Timestamptz,
    }
}

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

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = rentals)]
pub struct RentalRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub months: i32,
    pub monthly_fee: i32,
    pub delivery_address: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub payment_id: Uuid,
}

impl RentalRow {
    pub fn status(&self) -> Result<RentalStatus, ApiError> {
        self.status.parse().map_err(ApiError::internal)
    }
}

/// All rentals among `ids`, in one statement.
pub async fn find_many(database: &Database, ids: &[Uuid]) -> Result<Vec<RentalRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(rentals::table.filter(rentals::id.eq_any(ids)).select(RentalRow::as_select()).load(&mut connection).await?)
}

pub async fn insert(connection: &mut AsyncPgConnection, row: &RentalRow) -> QueryResult<()> {
    diesel::insert_into(rentals::table).values(row).execute(connection).await?;
    Ok(())
}

pub async fn find_in(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<RentalRow>> {
    rentals::table.find(id).select(RentalRow::as_select()).first(connection).await.optional()
}

/// Rental's copy of one catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = catalog)]
pub struct CatalogEntry {
    pub product_id: Uuid,
    pub name: String,
    pub monthly_fee: i32,
}

pub async fn catalog_entry(connection: &mut AsyncPgConnection, product_id: Uuid) -> QueryResult<Option<CatalogEntry>> {
    catalog::table.find(product_id).select(CatalogEntry::as_select()).first(connection).await.optional()
}

/// Records a product as inventory announced it; a newer announcement wins.
pub async fn upsert_catalog_entry(
    connection: &mut AsyncPgConnection,
    entry: &CatalogEntry,
    announced_at: DateTime<Utc>,
) -> QueryResult<()> {
    // Events may arrive out of order: only a newer announcement overwrites.
    diesel::sql_query(
        "INSERT INTO catalog (product_id, name, monthly_fee, updated_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (product_id) DO UPDATE SET name = EXCLUDED.name, monthly_fee = EXCLUDED.monthly_fee, \
         updated_at = EXCLUDED.updated_at WHERE catalog.updated_at <= EXCLUDED.updated_at",
    )
    .bind::<diesel::sql_types::Uuid, _>(entry.product_id)
    .bind::<diesel::sql_types::Text, _>(&entry.name)
    .bind::<diesel::sql_types::Integer, _>(entry.monthly_fee)
    .bind::<diesel::sql_types::Timestamptz, _>(announced_at)
    .execute(connection)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Pending,
    Completed,
    Voiding,
    Abandoned,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "PENDING",
            RequestState::Completed => "COMPLETED",
            RequestState::Voiding => "VOIDING",
            RequestState::Abandoned => "ABANDONED",
        }
    }

    fn parse(text: &str) -> QueryResult<Self> {
        match text {
            "PENDING" => Ok(RequestState::Pending),
            "COMPLETED" => Ok(RequestState::Completed),
            "VOIDING" => Ok(RequestState::Voiding),
            "ABANDONED" => Ok(RequestState::Abandoned),
            other => Err(diesel::result::Error::DeserializationError(format!("unknown request state {other}").into())),
        }
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

type RequestColumns = (
    rent_requests::customer_id,
    rent_requests::idempotency_key,
    rent_requests::request_hash,
    rent_requests::rental_id,
    rent_requests::state,
    rent_requests::updated_at,
);

const REQUEST_COLUMNS: RequestColumns = (
    rent_requests::customer_id,
    rent_requests::idempotency_key,
    rent_requests::request_hash,
    rent_requests::rental_id,
    rent_requests::state,
    rent_requests::updated_at,
);

fn request_from(row: (Uuid, String, String, Uuid, String, DateTime<Utc>)) -> QueryResult<RentRequestRow> {
    Ok(RentRequestRow {
        customer_id: row.0,
        idempotency_key: row.1,
        request_hash: row.2,
        rental_id: row.3,
        state: RequestState::parse(&row.4)?,
        updated_at: row.5,
    })
}

/// Inserts a PENDING request unless one exists for this customer and key; returns
/// the request as stored (the new one, or the earlier one).
pub async fn claim_request(
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
        .returning(REQUEST_COLUMNS)
        .get_result(connection)
        .await
        .optional()?;
    if let Some(row) = inserted {
        return Ok((true, request_from(row)?));
    }
    let row =
        rent_requests::table.find((customer_id, idempotency_key)).select(REQUEST_COLUMNS).first(connection).await?;
    Ok((false, request_from(row)?))
}

/// The request for `rental_id`, locked until the end of the transaction.
pub async fn lock_request(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<Option<RentRequestRow>> {
    let row = rent_requests::table
        .filter(rent_requests::rental_id.eq(rental_id))
        .select(REQUEST_COLUMNS)
        .for_update()
        .first(connection)
        .await
        .optional()?;
    row.map(request_from).transpose()
}

/// Moves the request for `rental_id` from `from` to `to`; false if it was not in
/// `from`. The row is locked until the end of the transaction either way, and a
/// concurrent change (the reconciler taking it) is waited for and seen.
pub async fn move_request(
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

pub async fn set_request_state(
    connection: &mut AsyncPgConnection,
    rental_id: Uuid,
    state: RequestState,
) -> QueryResult<()> {
    diesel::update(rent_requests::table.filter(rent_requests::rental_id.eq(rental_id)))
        .set((rent_requests::state.eq(state.as_str()), rent_requests::updated_at.eq(Utc::now())))
        .execute(connection)
        .await?;
    Ok(())
}

/// Starts over under the same key after an abandoned attempt: a new rental id, since
/// the old one's charge has been called off for good.
pub async fn restart_request(
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

/// Requests the reconciler must finish: PENDING for longer than `older_than`, and
/// every VOIDING one.
pub async fn unfinished_requests(
    connection: &mut AsyncPgConnection,
    older_than: DateTime<Utc>,
) -> QueryResult<Vec<RentRequestRow>> {
    let rows =
        rent_requests::table
            .filter(rent_requests::state.eq(RequestState::Voiding.as_str()).or(
                rent_requests::state.eq(RequestState::Pending.as_str()).and(rent_requests::updated_at.lt(older_than)),
            ))
            .select(REQUEST_COLUMNS)
            .order(rent_requests::updated_at)
            .limit(100)
            .load(connection)
            .await?;
    rows.into_iter().map(request_from).collect()
}

pub async fn lock_rental(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<RentalRow>> {
    rentals::table.find(id).select(RentalRow::as_select()).for_update().first(connection).await.optional()
}

pub async fn set_status(
    connection: &mut AsyncPgConnection,
    id: Uuid,
    status: RentalStatus,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::update(rentals::table.find(id))
        .set((rentals::status.eq(status.as_str()), rentals::updated_at.eq(at)))
        .execute(connection)
        .await?;
    Ok(())
}

/// Records a step of a rental's timeline; the same step learned again keeps the
/// earliest time. The history row is refreshed by the caller ([`project`]).
pub async fn record_timeline(
    connection: &mut AsyncPgConnection,
    event_id: Uuid,
    rental_id: Uuid,
    kind: crate::domain::TimelineKind,
    at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO rental_timeline (event_id, rental_id, kind, at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (rental_id, kind) DO UPDATE SET at = LEAST(rental_timeline.at, EXCLUDED.at)",
    )
    .bind::<diesel::sql_types::Uuid, _>(event_id)
    .bind::<diesel::sql_types::Uuid, _>(rental_id)
    .bind::<diesel::sql_types::Text, _>(kind.as_str())
    .bind::<diesel::sql_types::Timestamptz, _>(at)
    .execute(connection)
    .await?;
    Ok(())
}

/// Writes the rental's history row (the read model) from its rental row and timeline.
/// Deterministic: whatever order the events came in, the row ends the same. Nothing
/// happens while the rental itself is not committed yet; its commit projects it.
pub async fn project(connection: &mut AsyncPgConnection, rental_id: Uuid) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO rental_history (rental_id, customer_id, product_id, months, monthly_fee, delivery_address, \
                                     status, created_at, updated_at, timeline) \
         SELECT r.id, r.customer_id, r.product_id, r.months, r.monthly_fee, r.delivery_address, r.status, \
                r.created_at, r.updated_at, \
                COALESCE((SELECT jsonb_agg(jsonb_build_object('kind', t.kind, 'at', t.at) ORDER BY t.at, t.kind) \
                          FROM rental_timeline t WHERE t.rental_id = r.id), '[]'::jsonb) \
         FROM rentals r WHERE r.id = $1 \
         ON CONFLICT (rental_id) DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at, \
                                               timeline = EXCLUDED.timeline",
    )
    .bind::<diesel::sql_types::Uuid, _>(rental_id)
    .execute(connection)
    .await?;
    Ok(())
}

diesel::table! {
    rental_history (rental_id) {
        rental_id -> Uuid,
        customer_id -> Uuid,
        product_id -> Uuid,
        months -> Int4,
        monthly_fee -> Int4,
        delivery_address -> Text,
        status -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        timeline -> Jsonb,
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = rental_history)]
pub struct HistoryRow {
    pub rental_id: Uuid,
    pub customer_id: Uuid,
    pub product_id: Uuid,
    pub months: i32,
    pub monthly_fee: i32,
    pub delivery_address: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub timeline: serde_json::Value,
}

/// One page of a customer's history, newest first: one indexed read.
pub async fn history_page(
    connection: &mut Connection,
    customer_id: Uuid,
    status: Option<RentalStatus>,
    page: &PageRequest,
) -> Result<Vec<HistoryRow>, ApiError> {
    let mut query = rental_history::table
        .filter(rental_history::customer_id.eq(customer_id))
        .select(HistoryRow::as_select())
        .order(rental_history::rental_id.desc())
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(rental_history::status.eq(status.as_str()));
    }
    if let Some(after) = page.after {
        query = query.filter(rental_history::rental_id.lt(after));
    }
    Ok(query.limit(page.fetch_limit()).load(connection).await?)
}

/// The timelines of many rentals in one statement, each in time order.
pub async fn timelines(
    database: &Database,
    rental_ids: &[Uuid],
) -> Result<Vec<(Uuid, String, DateTime<Utc>)>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(rental_timeline::table
        .filter(rental_timeline::rental_id.eq_any(rental_ids))
        .order((rental_timeline::rental_id, rental_timeline::at, rental_timeline::kind))
        .select((rental_timeline::rental_id, rental_timeline::kind, rental_timeline::at))
        .load(&mut connection)
        .await?)
}

pub async fn forget_timeline(
    connection: &mut AsyncPgConnection,
    rental_id: Uuid,
    kind: crate::domain::TimelineKind,
) -> QueryResult<()> {
    diesel::delete(
        rental_timeline::table
            .filter(rental_timeline::rental_id.eq(rental_id))
            .filter(rental_timeline::kind.eq(kind.as_str())),
    )
    .execute(connection)
    .await?;
    Ok(())
}
