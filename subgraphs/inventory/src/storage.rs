//! Products in PostgreSQL.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use subgraph_kit::db::Connection;
use subgraph_kit::events::outbox;
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
}

/// Adds a product and announces it (`product.created`) in the same transaction.
pub async fn insert(connection: &mut Connection, product: NewProduct) -> Result<ProductRow, ApiError> {
    let id = Uuid::now_v7();
    connection.transaction(async |connection| insert_with_id(connection, id, product).await).await
}

async fn insert_with_id(
    connection: &mut AsyncPgConnection,
    id: Uuid,
    product: NewProduct,
) -> Result<ProductRow, ApiError> {
    let now = Utc::now();
    let row = ProductRow {
        id,
        name: product.name,
        description: product.description,
        monthly_fee: product.monthly_fee,
        stock: product.initial_stock,
        created_at: now,
        updated_at: now,
    };
    let result = diesel::insert_into(products::table)
        .values(&row)
        .returning(ProductRow::as_returning())
        .get_result(connection)
        .await;
    let row = match result {
        Err(diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _)) => {
            return Err(ApiError::conflict(format!("a product named {:?} already exists", row.name)));
        }
        other => other?,
    };
    announce(connection, &row).await?;
    Ok(row)
}

pub const PRODUCT_CREATED: &str = "product.created";

/// `product.created` v1: what other services (rental's price list) need to know.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductCreated {
    pub product_id: Uuid,
    pub name: String,
    pub monthly_fee: i32,
}

async fn announce(connection: &mut AsyncPgConnection, row: &ProductRow) -> QueryResult<()> {
    let event = ProductCreated { product_id: row.id, name: row.name.clone(), monthly_fee: row.monthly_fee };
    outbox::enqueue(connection, crate::SERVICE, PRODUCT_CREATED, 1, &event).await?;
    Ok(())
}

/// Inserts products that do not exist yet (by id) and leaves existing ones untouched;
/// then announces every one of them as it is stored, so a service whose copy of the
/// catalog missed them (a fresh database, events from before it subscribed) catches
/// up. Announcing twice is harmless: the copies keep the newest announcement.
pub async fn insert_missing(connection: &mut Connection, rows: &[ProductRow]) -> Result<usize, ApiError> {
    connection
        .transaction(async |connection| {
            let mut added = 0;
            for row in rows {
                added += diesel::insert_into(products::table)
                    .values(row)
                    .on_conflict_do_nothing()
                    .execute(connection)
                    .await?;
                let stored = products::table.find(row.id).select(ProductRow::as_select()).first(connection).await?;
                announce(connection, &stored).await?;
            }
            Ok::<_, ApiError>(added)
        })
        .await
}

/// All products among `ids`, in one statement.
pub async fn find_many(database: &Database, ids: &[Uuid]) -> Result<Vec<ProductRow>, ApiError> {
    let mut connection = database.connection().await?;
    Ok(products::table.filter(products::id.eq_any(ids)).select(ProductRow::as_select()).load(&mut connection).await?)
}

/// One page of the catalog in creation order.
pub async fn page(connection: &mut Connection, page: &PageRequest) -> Result<Vec<ProductRow>, ApiError> {
    let mut query = products::table.select(ProductRow::as_select()).order(products::id.asc()).into_boxed();
    if let Some(after) = page.after {
        query = query.filter(products::id.gt(after));
    }
    Ok(query.limit(page.fetch_limit()).load(connection).await?)
}

/// Adds units and serves shipments waiting for this product, in one transaction;
/// `None` when the product does not exist.
pub async fn restock(connection: &mut Connection, id: Uuid, quantity: i32) -> Result<Option<ProductRow>, ApiError> {
    connection
        .transaction(async |connection| {
            let result = diesel::update(products::table.find(id))
                .set((products::stock.eq(products::stock + quantity), products::updated_at.eq(Utc::now())))
                .execute(connection)
                .await;
            match result {
                // Stock is a 32-bit integer; only an absurd pile of restocks can overflow it.
                Err(diesel::result::Error::DatabaseError(_, info)) if info.message().contains("out of range") => {
                    return Err(ApiError::bad_input(format!(
                        "restocking {quantity} units would exceed the stock limit"
                    )));
                }
                Ok(0) => return Ok(None),
                other => other?,
            };
            crate::stock::serve_shortages(connection, id).await?;
            Ok(products::table.find(id).select(ProductRow::as_select()).first(connection).await.optional()?)
        })
        .await
}
