//! The rental part of the graph: `Rental`, `rental(id)` and `myRentals`.

use std::collections::HashMap;

use async_graphql::connection::Connection;
use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, ID, InputObject, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::graphql::{PageRequest, connection, identity, parse_id};
use subgraph_kit::server::Wiring;
use subgraph_kit::{ApiError, Database, Identity};
use uuid::Uuid;

use crate::domain::{RentRequest, RentalStatus, TimelineKind};
use crate::renting::Renting;
use crate::storage::{self, RentalRow};

pub type RentalSchema = Schema<Query, Mutation, EmptySubscription>;

/// The schema; `renting` is absent only when the schema is built to export its SDL.
pub fn schema_with(wiring: &Wiring, renting: Option<Arc<Renting>>) -> RentalSchema {
    let database = wiring.database.clone();
    let mut builder = Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .data(BatchLoader::new(RentalLoader(database.clone())))
        .data(BatchLoader::new(TimelineLoader(database.clone())))
        .data(wiring.relay.clone())
        .data(database);
    if let Some(renting) = renting {
        builder = builder.data(renting);
    }
    builder.finish()
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
    fn from_history(row: storage::HistoryRow) -> Result<Self, ApiError> {
        let timeline: Vec<TimelineEntry> = serde_json::from_value::<Vec<HistoryStep>>(row.timeline)
            .map_err(ApiError::internal)?
            .into_iter()
            .map(|step| {
                let kind = TimelineKind::parse(&step.kind)
                    .ok_or_else(|| ApiError::internal(format!("unknown timeline kind {}", step.kind)))?;
                Ok(TimelineEntry { kind, at: step.at })
            })
            .collect::<Result<_, ApiError>>()?;
        Ok(Self {
            id: ID(row.rental_id.to_string()),
            customer_id: ID(row.customer_id.to_string()),
            product: Product { id: ID(row.product_id.to_string()) },
            months: row.months,
            monthly_fee: row.monthly_fee,
            status: row.status.parse().map_err(ApiError::internal)?,
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
            status: row.status()?,
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
    /// cancelled, refunded. Kept up to date by the other services' events, so an entry
    /// can appear a moment after the change it records.
    async fn timeline(&self, ctx: &Context<'_>) -> Result<Vec<TimelineEntry>> {
        if let Some(preloaded) = &self.preloaded_timeline {
            return Ok(preloaded.clone());
        }
        let entries = ctx.data_unchecked::<BatchLoader<TimelineLoader>>().load_one(self.key).await?;
        Ok(entries.unwrap_or_default())
    }
}

/// Loads the timelines of many rentals in one query.
pub struct TimelineLoader(Database);

impl BatchFetch for TimelineLoader {
    type Key = Uuid;
    type Value = Vec<TimelineEntry>;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<TimelineEntry>>, ApiError> {
        let mut timelines: HashMap<Uuid, Vec<TimelineEntry>> = HashMap::new();
        for (rental_id, kind, at) in storage::timelines(&self.0, keys).await? {
            let kind = TimelineKind::parse(&kind)
                .ok_or_else(|| ApiError::internal(format!("unknown timeline kind {kind}")))?;
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
        storage::find_many(&self.0, keys).await?.into_iter().map(|row| Ok((row.id, Rental::from_row(row)?))).collect()
    }
}

/// A rental the caller may see. Another customer's rental reads exactly like a missing
/// one, so ids cannot be probed.
async fn visible_rental(ctx: &Context<'_>, caller: &Identity, id: Uuid) -> Result<Rental, ApiError> {
    let rental = ctx.data_unchecked::<BatchLoader<RentalLoader>>().load_one(id).await?;
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
        let page = PageRequest::parse(first, after.as_deref())?;
        let mut db = ctx.data_unchecked::<Database>().connection().await?;
        let rows = storage::history_page(&mut db, customer_id, status, &page).await?;
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
        let request = RentRequest::validate(
            product_id,
            input.months,
            &input.delivery_address,
            &input.card_number,
            &input.idempotency_key,
        )?;
        let renting = ctx
            .data_opt::<Arc<Renting>>()
            .ok_or_else(|| ApiError::internal("renting is not configured in this process"))?;
        let row = renting.rent(customer_id, request).await?;
        ctx.data_unchecked::<subgraph_kit::events::outbox::RelayWaker>().wake();
        Ok(Rental::from_row(row)?)
    }

    /// Cancels a rental that is not yet delivered (its customer or an operator). The
    /// delivery is cancelled, the payment refunded and a shipped unit returned to
    /// stock, each by its own service a moment later. If the delivery completed before
    /// the cancellation reached it, the rental is reinstated and stays ACTIVE.
    async fn cancel_rental(&self, ctx: &Context<'_>, id: ID) -> Result<Rental> {
        let caller = identity(ctx)?;
        let rental_id = parse_id(&id, "rental")?;
        let row = crate::renting::cancel(ctx.data_unchecked::<Database>(), caller, rental_id).await?;
        ctx.data_unchecked::<subgraph_kit::events::outbox::RelayWaker>().wake();
        Ok(Rental::from_row(row)?)
    }
}
