//! The catalog: products and their stock.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use subgraph_kit::graphql::PageRequest;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::NewProduct;

diesel::table! {
    products (id) {
        id -> Uuid,
        name -> Text,
        description -> Text,
        monthly_fee -> Int4,
        stock -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        care_interval_months -> Int4,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = products)]
pub struct ProductRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub monthly_fee: i32,
    pub stock: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub care_interval_months: i32,
}

impl ProductRow {
    pub fn new(id: Uuid, product: &NewProduct, now: DateTime<Utc>) -> Self {
        Self {
            id,
            name: product.name.as_str().to_owned(),
            description: product.description.as_str().to_owned(),
            monthly_fee: product.monthly_fee.won(),
            stock: product.initial_stock.units(),
            created_at: now,
            updated_at: now,
            care_interval_months: product.care_interval.months(),
        }
    }
}

/// Inserts a product; a name already in the catalog (case-insensitive) is CONFLICT.
pub async fn insert(connection: &mut AsyncPgConnection, row: &ProductRow) -> Result<ProductRow, ApiError> {
    let result = diesel::insert_into(products::table)
        .values(row)
        .returning(ProductRow::as_returning())
        .get_result(connection)
        .await;
    match result {
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
            Err(ApiError::conflict(format!("a product named {:?} already exists", row.name)))
        }
        other => Ok(other?),
    }
}

/// Inserts the product unless one with its id exists; true if inserted.
pub async fn insert_if_missing(connection: &mut AsyncPgConnection, row: &ProductRow) -> QueryResult<bool> {
    let added = diesel::insert_into(products::table).values(row).on_conflict_do_nothing().execute(connection).await?;
    Ok(added == 1)
}

pub async fn find(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<Option<ProductRow>> {
    products::table.find(id).select(ProductRow::as_select()).first(connection).await.optional()
}

/// All products among `ids`, in one statement.
pub async fn find_many(database: &Database, ids: &[Uuid]) -> Result<Vec<ProductRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(products::table.filter(products::id.eq_any(ids)).select(ProductRow::as_select()).load(&mut connection).await?)
}

pub async fn exists(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(products::table.find(id))).get_result(connection).await
}

/// One page of the catalog in creation order.
pub async fn page(database: &Database, page: &PageRequest) -> Result<Vec<ProductRow>, ApiError> {
    let mut connection = database.connection().await?;
    let mut query = products::table.select(ProductRow::as_select()).order(products::id.asc()).into_boxed();
    if let Some(after) = page.after {
        query = query.filter(products::id.gt(after));
    }
    Ok(query.limit(page.fetch_limit()).load(&mut connection).await?)
}

/// Adds `units` to the product's stock; false when there is no such product.
pub async fn add_units(connection: &mut AsyncPgConnection, id: Uuid, units: i32) -> Result<bool, ApiError> {
    let result = diesel::update(products::table.find(id))
        .set((products::stock.eq(products::stock + units), products::updated_at.eq(Utc::now())))
        .execute(connection)
        .await;
    match result {
        // Stock is a 32-bit integer; only an absurd pile of restocks can overflow it.
        Err(diesel::result::Error::DatabaseError(_, info)) if info.message().contains("out of range") => {
            Err(ApiError::bad_input(format!("restocking {units} units would exceed the stock limit")))
        }
        other => Ok(other? == 1),
    }
}

/// Takes one unit if there is one; false when the product has none (stock never goes
/// negative).
pub async fn take_unit(connection: &mut AsyncPgConnection, id: Uuid) -> QueryResult<bool> {
    let taken = diesel::update(products::table.find(id).filter(products::stock.gt(0)))
        .set((products::stock.eq(products::stock - 1), products::updated_at.eq(Utc::now())))
        .execute(connection)
        .await?;
    Ok(taken == 1)
}

/// Sets a product's care interval; the product as it is now, or none if it does not exist.
pub async fn set_care_interval(
    connection: &mut AsyncPgConnection,
    id: Uuid,
    months: i32,
) -> QueryResult<Option<ProductRow>> {
    diesel::update(products::table.find(id))
        .set((products::care_interval_months.eq(months), products::updated_at.eq(chrono::Utc::now())))
        .returning(ProductRow::as_returning())
        .get_result(connection)
        .await
        .optional()
}
