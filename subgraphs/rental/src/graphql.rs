//! The rental part of the graph: `Rental`, `rental(id)`, `myRentals`, `rent` and
//! `cancelRental`. A thin layer: it checks who asks, parses the input, and calls the
//! use cases in `service`.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, EmptySubscription, Enum, ID, InputObject, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::domain::TextEnum;
use subgraph_kit::graphql::{PageRequest, connection, identity, parse_id, schema_builder, state};
use subgraph_kit::{ApiError, Database, Identity};
use uuid::Uuid;

use crate::domain::{self, RentRequest};
use crate::service;
use crate::service::renting::Renting;
use crate::storage::history::{self, HistoryRow};
use crate::storage::rentals::{self, RentalRow};
use crate::storage::timeline;

pub type RentalSchema = Schema<Query, Mutation, EmptySubscription>;

/// What the resolvers work with.
pub struct Resolvers {
    database: Database,
    renting: Arc<Renting>,
    rentals: BatchLoader<RentalLoader>,
    timelines: BatchLoader<TimelineLoader>,
}

impl Resolvers {
    pub fn new(database: Database, renting: Arc<Renting>) -> Self {
        Self {
            rentals: BatchLoader::new(RentalLoader(database.clone())),
            timelines: BatchLoader::new(TimelineLoader(database.clone())),
            database,
            renting,
        }
    }
}

pub fn schema(resolvers: Arc<Resolvers>) -> RentalSchema {
    schema_builder(crate::SERVICE, Query, Mutation, EmptySubscription).data(resolvers).finish()
}

fn resolvers<'a>(ctx: &Context<'a>) -> &'a Resolvers {
    state::<Arc<Resolvers>>(ctx)
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "RentalStatus", remote = "crate::domain::RentalStatus")]
pub enum RentalStatus {
    /// Paid; the dispenser is on its way or waiting to ship.
    Accepted,
    /// Delivered and in use.
    Active,
    /// Cancelled before delivery; the payment is refunded.
    Cancelled,
}

/// What can happen to a rental, as its customer reads it in the timeline.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "TimelineKind", remote = "crate::domain::TimelineKind")]
pub enum TimelineKind {
    /// The first month was charged.
    Paid,
    DeliveryRequested,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
}

/// A dispenser model, owned by the inventory subgraph; rental only knows its id.
#[derive(SimpleObject, Clone)]
#[graphql(unresolvable = "id")]
pub struct Product {
    pub id: ID,
}

/// One customer's rental of one dispenser.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Rental {
    pub id: ID,
    /// The customer who rents (the subject of their token).
    pub customer_id: ID,
    pub product: Product,
    /// Contract length in months.
    pub months: i32,
    /// The monthly fee in won agreed at rental time.
    pub monthly_fee: i32,
    pub delivery_address: String,
    pub status: RentalStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[graphql(skip)]
    pub key: Uuid,
    #[graphql(skip)]
    pub owner: Uuid,
    /// Already read with the rental (from the history read model), if it was.
    #[graphql(skip)]
    pub preloaded_timeline: Option<Vec<TimelineEntry>>,
}

impl Rental {
    /// From the history read model: the rental and its timeline in one row.
    fn from_history(row: HistoryRow) -> Result<Self, ApiError> {
        let timeline: Vec<TimelineEntry> = serde_json::from_value::<Vec<HistoryStep>>(row.timeline)
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|step| Ok(TimelineEntry { kind: domain::TimelineKind::parse(&step.kind)?.into(), at: step.at }))
            .collect::<Result<_, ApiError>>()?;
        Ok(Self {
            id: ID(row.rental_id.to_string()),
            customer_id: ID(row.customer_id.to_string()),
            product: Product { id: ID(row.product_id.to_string()) },
            months: row.months,
            monthly_fee: row.monthly_fee,
            status: domain::RentalStatus::parse(&row.status)?.into(),
            delivery_address: row.delivery_address,
            created_at: row.created_at,
            updated_at: row.updated_at,
            key: row.rental_id,
            owner: row.customer_id,
            preloaded_timeline: Some(timeline),
        })
    }

    fn from_row(row: RentalRow) -> Result<Self, ApiError> {
        Ok(Self {
            id: ID(row.id.to_string()),
            customer_id: ID(row.customer_id.to_string()),
            product: Product { id: ID(row.product_id.to_string()) },
            months: row.months,
            monthly_fee: row.monthly_fee,
            status: row.status()?.into(),
            delivery_address: row.delivery_address,
            created_at: row.created_at,
            updated_at: row.updated_at,
            key: row.id,
            owner: row.customer_id,
            preloaded_timeline: None,
        })
    }
}

#[derive(serde::Deserialize)]
struct HistoryStep {
    kind: String,
    at: DateTime<Utc>,
}

/// One thing that happened to a rental.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    pub kind: TimelineKind,
    pub at: DateTime<Utc>,
}

#[async_graphql::ComplexObject]
impl Rental {
    /// What happened so far, oldest first: paid, delivery requested, shipped, delivered,
    /// cancelled, refunded. The other services' steps arrive by event, so an entry can
    /// appear a moment after the change it records; the rental's own (cancelled) shows
    /// at once.
    async fn timeline(&self, ctx: &Context<'_>) -> Result<Vec<TimelineEntry>> {
        if let Some(preloaded) = &self.preloaded_timeline {
            return Ok(preloaded.clone());
        }
        Ok(resolvers(ctx).timelines.load_one(self.key).await?.unwrap_or_default())
    }
}

/// Loads the timelines of many rentals in one query.
pub struct TimelineLoader(Database);

impl BatchFetch for TimelineLoader {
    type Key = Uuid;
    type Value = Vec<TimelineEntry>;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<TimelineEntry>>, ApiError> {
        let mut timelines: HashMap<Uuid, Vec<TimelineEntry>> = HashMap::new();
        for (rental_id, kind, at) in timeline::of_rentals(&self.0, keys).await? {
            let kind = domain::TimelineKind::parse(&kind)?.into();
            timelines.entry(rental_id).or_default().push(TimelineEntry { kind, at });
        }
        Ok(timelines)
    }
}

/// Loads rentals by id in batches: a hundred entity references, one query.
pub struct RentalLoader(Database);

impl BatchFetch for RentalLoader {
    type Key = Uuid;
    type Value = Rental;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Rental>, ApiError> {
        rentals::find_many(&self.0, keys).await?.into_iter().map(|row| Ok((row.id, Rental::from_row(row)?))).collect()
    }
}

/// A rental the caller may see. Another customer's rental reads exactly like a missing
/// one, so ids cannot be probed.
async fn visible_rental(ctx: &Context<'_>, caller: &Identity, id: Uuid) -> Result<Rental, ApiError> {
    let rental = resolvers(ctx).rentals.load_one(id).await?;
    rental
        .filter(|rental| caller.may_see_customer(rental.owner))
        .ok_or_else(|| ApiError::not_found(format!("there is no rental with id {id}")))
}

pub struct Query;

#[Object]
impl Query {
    /// One rental: customers see their own, operators see any.
    async fn rental(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Rental>> {
        let caller = identity(ctx)?;
        let id = parse_id(&id, "rental")?;
        Ok(Some(visible_rental(ctx, caller, id).await?))
    }

    /// The calling customer's rentals, newest first, each with its status and timeline:
    /// read from the history read model, one indexed read per page.
    async fn my_rentals(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many rentals to return (1-100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The endCursor of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only rentals in this status.")] status: Option<RentalStatus>,
    ) -> Result<Connection<String, Rental>> {
        let customer_id = identity(ctx)?.customer_id().ok_or_else(|| {
            ApiError::forbidden("myRentals lists a customer's own rentals: call it with a customer token")
        })?;
        let page = PageRequest::parse("myRentals", first, after.as_deref())?;
        let rows = history::page(&resolvers(ctx).database, customer_id, status.map(Into::into), &page).await?;
        let rentals = rows.into_iter().map(Rental::from_history).collect::<Result<Vec<_>, _>>()?;
        Ok(connection(&page, rentals, |rental| rental.key))
    }

    #[graphql(entity)]
    async fn find_rental_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Rental> {
        let caller = identity(ctx)?;
        let id = parse_id(&id, "rental")?;
        Ok(visible_rental(ctx, caller, id).await?)
    }
}

#[derive(InputObject)]
pub struct RentInput {
    pub product_id: ID,
    /// Contract length, 1-60 months.
    pub months: i32,
    /// Where to deliver the dispenser (1-500 characters).
    pub delivery_address: String,
    /// The card to charge the first month's fee to. Test cards: 4242424242424242
    /// approves, 4000000000000002 declines. Only its last four digits are kept.
    pub card_number: String,
    /// Any unique string (a UUID is a good choice). Retrying with the same key and the
    /// same input returns the same rental and never charges twice.
    pub idempotency_key: String,
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Rents a dispenser: charges the first month at once, then accepts the rental; a
    /// delivery is requested right after. Customers only.
    async fn rent(&self, ctx: &Context<'_>, input: RentInput) -> Result<Rental> {
        let customer_id = identity(ctx)?
            .customer_id()
            .ok_or_else(|| ApiError::forbidden("only customers may rent: call rent with a customer token"))?;
        let product_id = parse_id(&input.product_id, "product")?;
        let request = RentRequest::parse(
            product_id,
            input.months,
            &input.delivery_address,
            &input.card_number,
            &input.idempotency_key,
        )?;
        let row = resolvers(ctx).renting.rent(customer_id, request).await?;
        Ok(Rental::from_row(row)?)
    }

    /// Cancels a rental that is not yet delivered (its customer or an operator). The
    /// delivery is cancelled, the payment refunded and a shipped unit returned to
    /// stock, each by its own service a moment later. If the delivery completed before
    /// the cancellation reached it, the rental is reinstated and stays ACTIVE.
    /// Cancelling a cancelled rental returns it as it is.
    async fn cancel_rental(&self, ctx: &Context<'_>, id: ID) -> Result<Rental> {
        let caller = identity(ctx)?;
        let rental_id = parse_id(&id, "rental")?;
        let row = service::cancel(&resolvers(ctx).database, caller, rental_id).await?;
        Ok(Rental::from_row(row)?)
    }
}
