//! The delivery part of the graph: `Delivery`, the operators' queue, and
//! `Rental.delivery` on the rental entity.

use std::collections::HashMap;

use async_graphql::connection::Connection;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_graphql::{Context, ID, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use futures::Stream;
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::graphql::{PageRequest, connection, identity, parse_id, require_operator};
use subgraph_kit::server::Wiring;
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::DeliveryStatus;
use crate::live::{LiveHub, OpenStream, rank};
use crate::storage::{self, DeliveryRow};

pub type DeliverySchema = Schema<Query, Mutation, Subscription>;

/// The schema, with live updates from `hub`.
pub fn schema_with(wiring: &Wiring, hub: Arc<LiveHub>) -> DeliverySchema {
    let database = wiring.database.clone();
    Schema::build(Query, Mutation, Subscription)
        .enable_federation()
        .enable_subscription_in_federation()
        .data(hub)
        .data(wiring.active_subscriptions.clone())
        .data(wiring.shutdown.clone())
        .data(BatchLoader::new(DeliveryLoader(database.clone())))
        .data(BatchLoader::new(DeliveryByRentalLoader(database.clone())))
        .data(wiring.relay.clone())
        .data(database)
        .finish()
}

/// A dispenser model, owned by the inventory subgraph; delivery only knows its id.
#[derive(SimpleObject, Clone)]
#[graphql(unresolvable = "id")]
pub struct Product {
    pub id: ID,
}

/// Getting one rental's dispenser to the customer's door.
#[derive(SimpleObject, Clone)]
pub struct Delivery {
    pub id: ID,
    pub rental: Rental,
    /// The product to ship; its `stock` comes from inventory.
    pub product: Product,
    pub address: String,
    pub status: DeliveryStatus,
    pub requested_at: DateTime<Utc>,
    pub shipped_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// True while the shipment waits for a unit: it started when the product had no
    /// stock, and the next restock serves it.
    pub waiting_for_stock: bool,
    #[graphql(skip)]
    pub key: Uuid,
    #[graphql(skip)]
    pub owner: Uuid,
}

impl Delivery {
    fn from_row(row: DeliveryRow) -> Result<Self, ApiError> {
        Ok(Self {
            id: ID(row.id.to_string()),
            rental: Rental { id: ID(row.rental_id.to_string()), key: row.rental_id },
            product: Product { id: ID(row.product_id.to_string()) },
            status: row.status()?,
            address: row.address,
            requested_at: row.requested_at,
            shipped_at: row.shipped_at,
            delivered_at: row.delivered_at,
            cancelled_at: row.cancelled_at,
            waiting_for_stock: row.waiting_for_stock,
            key: row.id,
            owner: row.customer_id,
        })
    }
}

/// The rental entity, owned by the rental subgraph; delivery adds its `delivery` field.
#[derive(Clone)]
pub struct Rental {
    pub id: ID,
    key: Uuid,
}

#[Object]
impl Rental {
    async fn id(&self) -> &ID {
        &self.id
    }

    /// The rental's delivery, once requested.
    async fn delivery(&self, ctx: &Context<'_>) -> Result<Option<Delivery>> {
        let caller = identity(ctx)?;
        let delivery = ctx.data_unchecked::<BatchLoader<DeliveryByRentalLoader>>().load_one(self.key).await?;
        match delivery {
            Some(delivery) if !caller.may_see_customer(delivery.owner) => {
                Err(ApiError::not_found(format!("there is no rental with id {}", self.key)).into())
            }
            delivery => Ok(delivery),
        }
    }
}

fn deliveries_by(
    rows: Vec<DeliveryRow>,
    key: impl Fn(&DeliveryRow) -> Uuid,
) -> Result<HashMap<Uuid, Delivery>, ApiError> {
    rows.into_iter().map(|row| Ok((key(&row), Delivery::from_row(row)?))).collect()
}

/// Loads deliveries by id in batches.
pub struct DeliveryLoader(Database);

impl BatchFetch for DeliveryLoader {
    type Key = Uuid;
    type Value = Delivery;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Delivery>, ApiError> {
        deliveries_by(storage::find_many(&self.0, keys).await?, |row| row.id)
    }
}

/// Loads the deliveries of many rentals in one query.
pub struct DeliveryByRentalLoader(Database);

impl BatchFetch for DeliveryByRentalLoader {
    type Key = Uuid;
    type Value = Delivery;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Delivery>, ApiError> {
        deliveries_by(storage::find_by_rentals(&self.0, keys).await?, |row| row.rental_id)
    }
}

async fn visible_delivery(ctx: &Context<'_>, id: Uuid) -> Result<Delivery, ApiError> {
    let caller = identity(ctx)?;
    let delivery = ctx.data_unchecked::<BatchLoader<DeliveryLoader>>().load_one(id).await?;
    delivery
        .filter(|delivery| caller.may_see_customer(delivery.owner))
        .ok_or_else(|| ApiError::not_found(format!("there is no delivery with id {id}")))
}

pub struct Query;

#[Object]
impl Query {
    /// The operators' delivery queue, oldest first (operators only).
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only deliveries in this status.")] status: Option<DeliveryStatus>,
        #[graphql(desc = "How many deliveries to return (1-100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The endCursor of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, Delivery>> {
        require_operator(ctx, "list deliveries")?;
        let page = PageRequest::parse(first, after.as_deref())?;
        let mut db = ctx.data_unchecked::<Database>().connection().await?;
        let rows = storage::page(&mut db, status, &page).await?;
        let deliveries = rows.into_iter().map(Delivery::from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(connection(&page, deliveries, |delivery| delivery.key))
    }

    /// One delivery: customers see their own, operators see any.
    async fn delivery(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Delivery>> {
        let id = parse_id(&id, "delivery")?;
        Ok(Some(visible_delivery(ctx, id).await?))
    }

    #[graphql(entity)]
    async fn find_delivery_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Delivery> {
        let id = parse_id(&id, "delivery")?;
        Ok(visible_delivery(ctx, id).await?)
    }

    #[graphql(entity)]
    async fn find_rental_by_id(&self, id: ID) -> Result<Rental> {
        let key = parse_id(&id, "rental")?;
        Ok(Rental { id, key })
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Ships a requested delivery (operators only): REQUESTED → SHIPPING. The
    /// product's stock goes down by one, asynchronously.
    async fn start_delivery(&self, ctx: &Context<'_>, id: ID) -> Result<Delivery> {
        require_operator(ctx, "start deliveries")?;
        let id = parse_id(&id, "delivery")?;
        let row = crate::shipping::start(ctx.data_unchecked::<Database>(), id).await?;
        ctx.data_unchecked::<subgraph_kit::events::outbox::RelayWaker>().wake();
        Ok(Delivery::from_row(row)?)
    }

    /// Marks a shipping delivery as delivered (operators only): SHIPPING → DELIVERED.
    /// The rental becomes ACTIVE.
    async fn complete_delivery(&self, ctx: &Context<'_>, id: ID) -> Result<Delivery> {
        require_operator(ctx, "complete deliveries")?;
        let id = parse_id(&id, "delivery")?;
        let row = crate::shipping::complete(ctx.data_unchecked::<Database>(), id).await?;
        ctx.data_unchecked::<subgraph_kit::events::outbox::RelayWaker>().wake();
        Ok(Delivery::from_row(row)?)
    }
}

pub struct Subscription;

#[async_graphql::Subscription]
impl Subscription {
    /// The delivery of a rental, live: first its current state, then every status
    /// change in order, ending when it is DELIVERED or CANCELLED. Only the rental's
    /// customer or an operator may subscribe. If the delivery has not been requested
    /// yet, the first event comes when it is.
    async fn delivery_status_changed(
        &self,
        ctx: &Context<'_>,
        rental_id: ID,
    ) -> Result<impl Stream<Item = Result<Delivery>> + use<>> {
        let caller = identity(ctx)?.clone();
        let rental_id = parse_id(&rental_id, "rental")?;
        let database = ctx.data_unchecked::<Database>().clone();
        let shutdown = ctx.data_unchecked::<tokio_util::sync::CancellationToken>().clone();
        let gauge = ctx.data_unchecked::<Arc<AtomicUsize>>().clone();
        // Listen first, then read: a change between the two is not missed.
        let mut listener = ctx.data_unchecked::<Arc<LiveHub>>().listen(rental_id);
        let not_yours = move || ApiError::not_found(format!("there is no rental with id {rental_id}"));
        let current = storage::find_by_rental(&database, rental_id).await?;
        if current.as_ref().is_some_and(|row| !caller.may_see_customer(row.customer_id)) {
            return Err(not_yours().into());
        }
        Ok(async_stream::stream! {
            let _open = OpenStream::new(gauge);
            let mut sent = 0;
            let mut current = current;
            loop {
                if let Some(row) = current.take() {
                    if !caller.may_see_customer(row.customer_id) {
                        yield Err(not_yours().into());
                        break;
                    }
                    let delivery = match Delivery::from_row(row) {
                        Ok(delivery) => delivery,
                        Err(error) => {
                            yield Err(error.into());
                            break;
                        }
                    };
                    if rank(delivery.status) > sent {
                        sent = rank(delivery.status);
                        let terminal = delivery.status.is_terminal();
                        yield Ok(delivery);
                        if terminal {
                            break;
                        }
                    }
                }
                let changed = tokio::select! {
                    changed = listener.changed() => changed,
                    () = shutdown.cancelled() => false,
                };
                if !changed {
                    break;
                }
                match storage::find_by_rental(&database, rental_id).await {
                    Ok(row) => current = row,
                    Err(error) => {
                        yield Err(error.into());
                        break;
                    }
                }
            }
        })
    }
}
