//! The field-service part of the graph: `Delivery` (the installation) with the
//! operators' queue and the live status subscription, `Visit` (care visits, pickups)
//! with the technicians' queue, and `Rental.delivery` / `Rental.visits` on the rental
//! entity. It checks who asks and parses the input; changes go through `service`,
//! reads go to `storage` directly (batched per request).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use futures::Stream;
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::graphql::{
    PageRequest, RentalRef, connection, identity, parse_id, require_operator, schema_builder, state, visible,
};
use subgraph_kit::{ApiError, Database};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use subgraph_kit::clock::Calendar;
use subgraph_kit::live::{LiveHub, OpenStream};

use crate::domain::{self, DeliveryMoves, Unit, parse_notes};
use crate::service;
use crate::service::live::{rank, unseen};
use crate::service::visits;
use crate::storage::deliveries::{self, DeliveryRow};
use crate::storage::visits::{QueueFilter, VisitRow};

pub type DeliverySchema = Schema<Query, Mutation, Subscription>;

/// What the resolvers work with.
pub struct Resolvers {
    database: Database,
    calendar: Calendar,
    by_id: BatchLoader<DeliveryLoader>,
    by_rental: BatchLoader<DeliveryByRentalLoader>,
    visits: BatchLoader<VisitLoader>,
    visits_by_rental: BatchLoader<VisitsByRentalLoader>,
    hub: Arc<LiveHub>,
    /// Cancelled when the service stops: live streams end (with `complete`).
    stopping: CancellationToken,
    open_streams: Arc<AtomicUsize>,
}

impl Resolvers {
    pub fn new(
        database: Database,
        calendar: Calendar,
        hub: Arc<LiveHub>,
        stopping: CancellationToken,
        open_streams: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            by_id: BatchLoader::new(DeliveryLoader(database.clone())),
            by_rental: BatchLoader::new(DeliveryByRentalLoader(database.clone())),
            visits: BatchLoader::new(VisitLoader(database.clone())),
            visits_by_rental: BatchLoader::new(VisitsByRentalLoader(database.clone())),
            database,
            calendar,
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
        let (status, unit) = (row.status, row.unit);
        Ok(Self {
            id: ID(row.id.to_string()),
            rental: Rental(RentalRef::new(row.rental_id)),
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
pub struct Rental(RentalRef);

#[Object]
impl Rental {
    async fn id(&self) -> &ID {
        self.0.id()
    }

    /// The rental's delivery, once requested.
    async fn delivery(&self, ctx: &Context<'_>) -> Result<Option<Delivery>> {
        let delivery = resolvers(ctx).by_rental.load_one(self.0.key()).await?;
        Ok(self.0.visible_one(identity(ctx)?, delivery, |delivery| delivery.owner)?)
    }

    /// The technicians' visits of the rental after its installation, by date: each
    /// filter-care visit (upcoming, done, or called off when the rental ended) and the
    /// pickup that collects the unit at the end.
    async fn visits(&self, ctx: &Context<'_>) -> Result<Vec<Visit>> {
        let visits = resolvers(ctx).visits_by_rental.load_one(self.0.key()).await?;
        Ok(self.0.visible_all(identity(ctx)?, visits, |visit| visit.owner)?)
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::VisitKind")]
pub enum VisitKind {
    /// Filter change and cleaning, at the product's care interval.
    Care,
    /// Collecting the unit when the rental has ended.
    Pickup,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::VisitStatus")]
pub enum VisitStatus {
    /// Planned for `scheduledFor`.
    Scheduled,
    /// The technician is there.
    InProgress,
    /// Done (a pickup: the unit is collected and goes back to stock).
    Done,
    /// Will not happen (a care visit after the rental ended).
    Cancelled,
}

/// A technician's visit to a rental's customer after the installation.
#[derive(SimpleObject, Clone)]
pub struct Visit {
    pub id: ID,
    pub kind: VisitKind,
    pub status: VisitStatus,
    /// Care visits are numbered from 1 along the term; a pickup is 1.
    pub number: i32,
    pub scheduled_for: DateTime<Utc>,
    /// The date the plan gave it (a customer may move a care visit within 14 days of it).
    pub planned_for: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub done_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The technician's notes.
    pub notes: Option<String>,
    /// Where the technician goes.
    pub address: String,
    pub rental: Rental,
    pub product: Product,
    #[graphql(skip)]
    pub key: Uuid,
    #[graphql(skip)]
    pub owner: Uuid,
}

impl From<VisitRow> for Visit {
    fn from(row: VisitRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            kind: row.kind.into(),
            status: row.status.into(),
            number: row.number,
            scheduled_for: row.scheduled_for,
            planned_for: row.planned_for,
            started_at: row.started_at,
            done_at: row.done_at,
            cancelled_at: row.cancelled_at,
            notes: row.notes,
            address: row.address,
            rental: Rental(RentalRef::new(row.rental_id)),
            product: Product { id: ID(row.product_id.to_string()) },
            key: row.id,
            owner: row.customer_id,
        }
    }
}

/// Loads visits by id in batches.
pub struct VisitLoader(Database);

impl BatchFetch for VisitLoader {
    type Key = Uuid;
    type Value = Visit;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Visit>, ApiError> {
        let rows = crate::storage::visits::find_many(&self.0, keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, row.into())).collect())
    }
}

/// Loads the visits of many rentals in one query.
pub struct VisitsByRentalLoader(Database);

impl BatchFetch for VisitsByRentalLoader {
    type Key = Uuid;
    type Value = Vec<Visit>;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<Visit>>, ApiError> {
        let mut by_rental: HashMap<Uuid, Vec<Visit>> = HashMap::new();
        for row in crate::storage::visits::find_by_rentals(&self.0, keys).await? {
            by_rental.entry(row.rental_id).or_default().push(row.into());
        }
        Ok(by_rental)
    }
}

async fn visible_visit(ctx: &Context<'_>, id: Uuid) -> Result<Visit, ApiError> {
    let visit = resolvers(ctx).visits.load_one(id).await?;
    let no_such_visit = || ApiError::not_found(format!("there is no visit with id {id}"));
    visible(identity(ctx)?, visit, |visit| visit.owner, no_such_visit)?.ok_or_else(no_such_visit)
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

    /// The technicians' queue, oldest due first (operators only), with each visit's
    /// product and rental (`product { name stock }`, `rental { customerId
    /// deliveryAddress }`) from their own subgraphs.
    async fn visits(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only visits of this kind.")] kind: Option<VisitKind>,
        #[graphql(desc = "Only visits in this status.")] status: Option<VisitStatus>,
        #[graphql(desc = "Only visits scheduled before this time.")] due_before: Option<DateTime<Utc>>,
        #[graphql(desc = "How many visits to return (1-100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The endCursor of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, Visit>> {
        require_operator(ctx, "list the technicians' visits")?;
        let page = PageRequest::parse("visits", first, after.as_deref())?;
        let filter = QueueFilter { kind: kind.map(Into::into), status: status.map(Into::into), due_before };
        let rows = crate::storage::visits::page(&resolvers(ctx).database, filter, &page).await?;
        Ok(connection(&page, rows.into_iter().map(Visit::from).collect(), |visit| visit.key))
    }

    /// One visit: customers see their own, operators see any.
    async fn visit(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Visit>> {
        let id = parse_id(&id, "visit")?;
        Ok(Some(visible_visit(ctx, id).await?))
    }

    #[graphql(entity)]
    async fn find_visit_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Visit> {
        let id = parse_id(&id, "visit")?;
        Ok(visible_visit(ctx, id).await?)
    }

    #[graphql(entity)]
    async fn find_delivery_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Delivery> {
        let id = parse_id(&id, "delivery")?;
        Ok(visible_delivery(ctx, id).await?)
    }

    #[graphql(entity)]
    async fn find_rental_by_id(&self, id: ID) -> Result<Rental> {
        Ok(Rental(RentalRef::from_representation(id)?))
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

    /// A technician starts a visit (operators only): SCHEDULED → IN_PROGRESS. Starting
    /// a started visit returns it as it is; a done or cancelled one is refused.
    async fn start_visit(&self, ctx: &Context<'_>, id: ID) -> Result<Visit> {
        require_operator(ctx, "start visits")?;
        let id = parse_id(&id, "visit")?;
        Ok(visits::start(&resolvers(ctx).database, id).await?.into())
    }

    /// A technician completes a visit, with notes (operators only): → DONE. A pickup's
    /// unit goes back to stock a moment later. Completing a done visit returns it as it
    /// is; a cancelled one is refused.
    async fn complete_visit(&self, ctx: &Context<'_>, id: ID, notes: Option<String>) -> Result<Visit> {
        require_operator(ctx, "complete visits")?;
        let id = parse_id(&id, "visit")?;
        let notes = parse_notes(notes.as_deref())?;
        Ok(visits::complete(&resolvers(ctx).database, id, notes).await?.into())
    }

    /// Moves a visit to another time: operators any visit not done (a pickup whose
    /// customer was not there goes back to SCHEDULED); customers their own upcoming care
    /// visit, within 14 days of its planned date.
    async fn reschedule_visit(&self, ctx: &Context<'_>, id: ID, scheduled_for: DateTime<Utc>) -> Result<Visit> {
        let caller = identity(ctx)?;
        let id = parse_id(&id, "visit")?;
        let resolvers = resolvers(ctx);
        Ok(visits::reschedule(&resolvers.database, &resolvers.calendar, caller, id, scheduled_for).await?.into())
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
                    let mut ended = false;
                    for step in unseen(row, sent) {
                        let status = step.status;
                        match Delivery::from_row(step) {
                            Ok(delivery) => {
                                sent = rank(status);
                                yield Ok(delivery);
                                ended = status.is_terminal();
                            }
                            Err(error) => {
                                yield Err(error.into());
                                ended = true;
                                break;
                            }
                        }
                    }
                    if ended {
                        break;
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
