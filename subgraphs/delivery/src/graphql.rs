//! The delivery part of the graph: `Delivery`, the operators' queue, the live status
//! subscription, and `Rental.delivery` on the rental entity. A thin layer: it checks
//! who asks, parses the input, and calls the use cases in `service`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use futures::Stream;
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::graphql::{
    EntityRef, PageRequest, connection, identity, parse_id, require_operator, schema_builder, state, visible,
};
use subgraph_kit::{ApiError, Database};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{self, Unit};
use crate::service;
use subgraph_kit::live::{LiveHub, OpenStream};

use crate::service::live::rank;
use crate::storage::deliveries::{self, DeliveryRow};

pub type DeliverySchema = Schema<Query, Mutation, Subscription>;

/// What the resolvers work with.
pub struct Resolvers {
    database: Database,
    by_id: BatchLoader<DeliveryLoader>,
    by_rental: BatchLoader<DeliveryByRentalLoader>,
    hub: Arc<LiveHub>,
    /// Cancelled when the service stops: live streams end (with `complete`).
    stopping: CancellationToken,
    open_streams: Arc<AtomicUsize>,
}

impl Resolvers {
    pub fn new(
        database: Database,
        hub: Arc<LiveHub>,
        stopping: CancellationToken,
        open_streams: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            by_id: BatchLoader::new(DeliveryLoader(database.clone())),
            by_rental: BatchLoader::new(DeliveryByRentalLoader(database.clone())),
            database,
            hub,
            stopping,
            open_streams,
        }
    }
}

pub fn schema(resolvers: Arc<Resolvers>) -> DeliverySchema {
    schema_builder(crate::SERVICE, Query, Mutation, Subscription)
        .enable_subscription_in_federation()
        .data(resolvers)
        .finish()
}

fn resolvers<'a>(ctx: &Context<'a>) -> &'a Resolvers {
    state::<Arc<Resolvers>>(ctx)
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "DeliveryStatus", remote = "crate::domain::DeliveryStatus")]
pub enum DeliveryStatus {
    /// Waiting in the operators' queue.
    Requested,
    /// On its way to the customer.
    Shipping,
    /// At the customer's door; the rental is active.
    Delivered,
    /// Called off because the rental was cancelled.
    Cancelled,
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
    /// True once inventory has taken a unit for this shipment; only then can it be
    /// completed (`completeDelivery` answers WAITING_FOR_STOCK before).
    pub unit_confirmed: bool,
    #[graphql(skip)]
    pub key: Uuid,
    #[graphql(skip)]
    pub owner: Uuid,
}

impl Delivery {
    fn from_row(row: DeliveryRow) -> Result<Self, ApiError> {
        let status: domain::DeliveryStatus = row.status()?;
        let unit = row.unit()?;
        Ok(Self {
            id: ID(row.id.to_string()),
            rental: Rental(EntityRef::new(row.rental_id)),
            product: Product { id: ID(row.product_id.to_string()) },
            status: status.into(),
            address: row.address,
            requested_at: row.requested_at,
            shipped_at: row.shipped_at,
            delivered_at: row.delivered_at,
            cancelled_at: row.cancelled_at,
            waiting_for_stock: status == domain::DeliveryStatus::Shipping && unit == Unit::Short,
            unit_confirmed: unit == Unit::Taken,
            key: row.id,
            owner: row.customer_id,
        })
    }
}

/// The rental entity, owned by the rental subgraph; delivery adds its `delivery` field.
#[derive(Clone)]
pub struct Rental(EntityRef);

#[Object]
impl Rental {
    async fn id(&self) -> &ID {
        &self.0.id
    }

    /// The rental's delivery, once requested.
    async fn delivery(&self, ctx: &Context<'_>) -> Result<Option<Delivery>> {
        let delivery = resolvers(ctx).by_rental.load_one(self.0.key).await?;
        let key = self.0.key;
        Ok(visible(identity(ctx)?, delivery, |delivery| delivery.owner, || no_such_rental(key))?)
    }
}

fn no_such_rental(id: Uuid) -> ApiError {
    ApiError::not_found(format!("there is no rental with id {id}"))
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
        deliveries_by(deliveries::find_many(&self.0, keys).await?, |row| row.id)
    }
}

/// Loads the deliveries of many rentals in one query.
pub struct DeliveryByRentalLoader(Database);

impl BatchFetch for DeliveryByRentalLoader {
    type Key = Uuid;
    type Value = Delivery;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Delivery>, ApiError> {
        deliveries_by(deliveries::find_by_rentals(&self.0, keys).await?, |row| row.rental_id)
    }
}

async fn visible_delivery(ctx: &Context<'_>, id: Uuid) -> Result<Delivery, ApiError> {
    let delivery = resolvers(ctx).by_id.load_one(id).await?;
    let no_such_delivery = || ApiError::not_found(format!("there is no delivery with id {id}"));
    visible(identity(ctx)?, delivery, |delivery| delivery.owner, no_such_delivery)?.ok_or_else(no_such_delivery)
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
        let page = PageRequest::parse("deliveries", first, after.as_deref())?;
        let rows = deliveries::page(&resolvers(ctx).database, status.map(Into::into), &page).await?;
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
        Ok(Rental(EntityRef::parse(id, "rental")?))
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Ships a requested delivery (operators only): REQUESTED → SHIPPING. The
    /// product's stock goes down by one, asynchronously; `unitConfirmed` turns true
    /// when it has. Starting a delivery that is already shipping returns it as it is.
    async fn start_delivery(&self, ctx: &Context<'_>, id: ID) -> Result<Delivery> {
        require_operator(ctx, "start deliveries")?;
        let id = parse_id(&id, "delivery")?;
        Ok(Delivery::from_row(service::start(&resolvers(ctx).database, id).await?)?)
    }

    /// Marks a shipping delivery as delivered (operators only): SHIPPING → DELIVERED,
    /// once inventory has confirmed its unit (WAITING_FOR_STOCK before). The rental
    /// becomes ACTIVE. Completing a delivered delivery returns it as it is.
    async fn complete_delivery(&self, ctx: &Context<'_>, id: ID) -> Result<Delivery> {
        require_operator(ctx, "complete deliveries")?;
        let id = parse_id(&id, "delivery")?;
        Ok(Delivery::from_row(service::complete(&resolvers(ctx).database, id).await?)?)
    }
}

pub struct Subscription;

#[async_graphql::Subscription]
impl Subscription {
    /// The delivery of a rental, live: first its current state, then every status
    /// change in order, ending when it is DELIVERED or CANCELLED. Only the rental's
    /// customer or an operator may subscribe. If the delivery has not been requested
    /// yet, the first event comes when it is. When the service restarts the stream
    /// completes early; subscribing again starts with the current state, so nothing
    /// is missed.
    async fn delivery_status_changed(
        &self,
        ctx: &Context<'_>,
        rental_id: ID,
    ) -> Result<impl Stream<Item = Result<Delivery>> + use<>> {
        let caller = identity(ctx)?.clone();
        let rental_id = parse_id(&rental_id, "rental")?;
        let resolvers = resolvers(ctx);
        let database = resolvers.database.clone();
        let stopping = resolvers.stopping.clone();
        let open_streams = resolvers.open_streams.clone();
        // Listen first, then read: a change between the two is not missed.
        let mut listener = resolvers.hub.listen(rental_id);
        let not_yours = move || ApiError::not_found(format!("there is no rental with id {rental_id}"));
        let current = deliveries::find_by_rental(&database, rental_id).await?;
        if current.as_ref().is_some_and(|row| !caller.may_see_customer(row.customer_id)) {
            return Err(not_yours().into());
        }
        Ok(async_stream::stream! {
            let _open = OpenStream::new(crate::SERVICE, open_streams);
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
                    let status = domain::DeliveryStatus::from(delivery.status);
                    if rank(status) > sent {
                        sent = rank(status);
                        yield Ok(delivery);
                        if status.is_terminal() {
                            break;
                        }
                    }
                }
                let nudge = tokio::select! {
                    nudge = listener.changed() => nudge,
                    () = stopping.cancelled() => None,
                };
                let Some(nudge) = nudge else { break };
                // Reading the new state for this subscriber, in the trace of the change.
                let span = tracing::info_span!("live update", otel.kind = "server");
                subgraph_kit::telemetry::continue_trace(&span, nudge.traceparent.as_deref());
                let read = tracing::Instrument::instrument(deliveries::find_by_rental(&database, rental_id), span);
                match read.await {
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
