//! The inventory part of the graph: `Product`, the catalog queries and the operators'
//! catalog mutations.

use std::collections::HashMap;

use async_graphql::connection::Connection;
use async_graphql::{Context, EmptySubscription, ID, InputObject, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::graphql::{PageRequest, connection, parse_id, require_operator};
use subgraph_kit::server::Wiring;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::{NewProduct, validate_restock};
use crate::storage::{self, ProductRow};

pub type InventorySchema = Schema<Query, Mutation, EmptySubscription>;

pub fn schema(wiring: &Wiring) -> InventorySchema {
    let database = wiring.database.clone();
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .data(BatchLoader::new(ProductLoader(database.clone())))
        .data(wiring.relay.clone())
        .data(database)
        .finish()
}

/// A dispenser model that can be rented.
#[derive(SimpleObject, Clone)]
pub struct Product {
    pub id: ID,
    pub name: String,
    pub description: String,
    /// The monthly rental fee in Korean won (KRW has no minor unit).
    pub monthly_fee: i32,
    /// Units on hand, ready to ship.
    pub stock: i32,
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    pub key: Uuid,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            name: row.name,
            description: row.description,
            monthly_fee: row.monthly_fee,
            stock: row.stock,
            created_at: row.created_at,
            key: row.id,
        }
    }
}

/// Loads products by id in batches: a hundred entity references, one query.
pub struct ProductLoader(Database);

impl BatchFetch for ProductLoader {
    type Key = Uuid;
    type Value = Product;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Product>, ApiError> {
        let rows = storage::find_many(&self.0, keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, Product::from(row))).collect())
    }
}

async fn load_product(ctx: &Context<'_>, id: Uuid) -> Result<Option<Product>, ApiError> {
    ctx.data_unchecked::<BatchLoader<ProductLoader>>().load_one(id).await
}

fn no_such_product(id: Uuid) -> ApiError {
    ApiError::not_found(format!("there is no product with id {id}"))
}

pub struct Query;

#[Object]
impl Query {
    /// The catalog, in the order products were added.
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many products to return (1-100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The endCursor of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, Product>> {
        subgraph_kit::graphql::identity(ctx)?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let mut db = ctx.data_unchecked::<Database>().connection().await?;
        let rows = storage::page(&mut db, &page).await?;
        Ok(connection(&page, rows.into_iter().map(Product::from).collect(), |product| product.key))
    }

    /// One product; an unknown id is an error with code NOT_FOUND.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Product>> {
        subgraph_kit::graphql::identity(ctx)?;
        let id = parse_id(&id, "product")?;
        Ok(Some(load_product(ctx, id).await?.ok_or_else(|| no_such_product(id))?))
    }

    #[graphql(entity)]
    async fn find_product_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Product> {
        let id = parse_id(&id, "product")?;
        Ok(load_product(ctx, id).await?.ok_or_else(|| no_such_product(id))?)
    }
}

#[derive(InputObject)]
pub struct CreateProductInput {
    /// 1-100 characters, unique in the catalog (case-insensitive).
    pub name: String,
    /// Up to 2000 characters.
    #[graphql(default)]
    pub description: String,
    /// Monthly fee in won, 1-10,000,000.
    pub monthly_fee: i32,
    /// Units on hand to start with (default 0).
    #[graphql(default)]
    pub initial_stock: i32,
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Adds a dispenser model to the catalog (operators only).
    async fn create_product(&self, ctx: &Context<'_>, input: CreateProductInput) -> Result<Product> {
        require_operator(ctx, "create products")?;
        let product = NewProduct::validate(&input.name, &input.description, input.monthly_fee, input.initial_stock)?;
        let mut db = ctx.data_unchecked::<Database>().connection().await?;
        let row = storage::insert(&mut db, product).await?;
        ctx.data_unchecked::<subgraph_kit::events::outbox::RelayWaker>().wake();
        Ok(row.into())
    }

    /// Adds `quantity` units to a product's stock (operators only).
    async fn restock_product(&self, ctx: &Context<'_>, product_id: ID, quantity: i32) -> Result<Product> {
        require_operator(ctx, "restock products")?;
        let id = parse_id(&product_id, "product")?;
        let quantity = validate_restock(quantity)?;
        let mut db = ctx.data_unchecked::<Database>().connection().await?;
        let row = storage::restock(&mut db, id, quantity).await?.ok_or_else(|| no_such_product(id))?;
        ctx.data_unchecked::<subgraph_kit::events::outbox::RelayWaker>().wake();
        Ok(row.into())
    }
}
