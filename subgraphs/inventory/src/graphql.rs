//! The inventory part of the graph: `Product`, the catalog queries and the operators'
//! catalog mutations. A thin layer: it checks who asks, parses the input, and calls
//! the use cases in `service`.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, EmptySubscription, ID, InputObject, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::graphql::{PageRequest, connection, identity, parse_id, require_operator, schema_builder, state};
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::{CareInterval, NewProduct, RestockQuantity};
use crate::service;
use crate::storage::products::{self, ProductRow};

pub type InventorySchema = Schema<Query, Mutation, EmptySubscription>;

/// What the resolvers work with.
pub struct Resolvers {
    database: Database,
    products: BatchLoader<ProductLoader>,
}

impl Resolvers {
    pub fn new(database: Database) -> Self {
        Self { products: BatchLoader::new(ProductLoader(database.clone())), database }
    }

    async fn product(&self, id: Uuid) -> Result<Product, ApiError> {
        self.products.load_one(id).await?.ok_or_else(|| no_such_product(id))
    }
}

pub fn schema(resolvers: Arc<Resolvers>) -> InventorySchema {
    schema_builder(crate::SERVICE, Query, Mutation, EmptySubscription).data(resolvers).finish()
}

fn resolvers<'a>(ctx: &Context<'a>) -> &'a Resolvers {
    state::<Arc<Resolvers>>(ctx)
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
    /// Months between two filter-care visits of a rented unit (1-24).
    pub care_interval_months: i32,
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
            care_interval_months: row.care_interval_months,
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
        let rows = products::find_many(&self.0, keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, Product::from(row))).collect())
    }
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
        identity(ctx)?;
        let page = PageRequest::parse("products", first, after.as_deref())?;
        let rows = products::page(&resolvers(ctx).database, &page).await?;
        Ok(connection(&page, rows.into_iter().map(Product::from).collect(), |product| product.key))
    }

    /// One product; an unknown id is an error with code NOT_FOUND.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Product>> {
        identity(ctx)?;
        let id = parse_id(&id, "product")?;
        Ok(Some(resolvers(ctx).product(id).await?))
    }

    #[graphql(entity)]
    async fn find_product_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Product> {
        let id = parse_id(&id, "product")?;
        Ok(resolvers(ctx).product(id).await?)
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
    /// Months between two filter-care visits of a rented unit, 1-24 (default 4).
    pub care_interval_months: Option<i32>,
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Adds a dispenser model to the catalog (operators only).
    async fn create_product(&self, ctx: &Context<'_>, input: CreateProductInput) -> Result<Product> {
        require_operator(ctx, "create products")?;
        let product = NewProduct::parse(
            &input.name,
            &input.description,
            input.monthly_fee,
            input.initial_stock,
            input.care_interval_months,
        )?;
        Ok(service::create_product(&resolvers(ctx).database, product).await?.into())
    }

    /// Adds `quantity` units to a product's stock (operators only). Shipments waiting
    /// for this product get their units first, oldest first.
    async fn restock_product(&self, ctx: &Context<'_>, product_id: ID, quantity: i32) -> Result<Product> {
        require_operator(ctx, "restock products")?;
        let id = parse_id(&product_id, "product")?;
        let quantity = RestockQuantity::parse(quantity)?;
        let row = service::restock(&resolvers(ctx).database, id, quantity).await?.ok_or_else(|| no_such_product(id))?;
        Ok(row.into())
    }

    /// Sets how many months pass between two filter-care visits of the product's units,
    /// 1-24 (operators only). Rentals that start afterwards are visited on the new
    /// interval; those running keep their plan.
    async fn set_care_interval(&self, ctx: &Context<'_>, product_id: ID, care_interval_months: i32) -> Result<Product> {
        require_operator(ctx, "change a product's care interval")?;
        let id = parse_id(&product_id, "product")?;
        let interval = CareInterval::parse(care_interval_months)?;
        let row = service::set_care_interval(&resolvers(ctx).database, id, interval)
            .await?
            .ok_or_else(|| no_such_product(id))?;
        Ok(row.into())
    }
}
