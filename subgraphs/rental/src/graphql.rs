//! The rental part of the graph: `Rental` with its contract (term, end, timeline),
//! `rental(id)`, `myRentals`, `rent`, `cancelRental`, `extendRental`, `terminateRental`,
//! and the live `rentalActivity`. It checks who asks and parses the input; changes go
//! through `service`, reads go to `storage` directly (the history read model for
//! `myRentals`, batched lookups for the rest).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use async_graphql::connection::Connection;
use async_graphql::{Context, Enum, ID, InputObject, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use futures::Stream;
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::clock::Calendar;
use subgraph_kit::graphql::{PageRequest, connection, identity, parse_id, schema_builder, state};
use subgraph_kit::live::{LiveHub, OpenStream};
use subgraph_kit::{ApiError, Database, Identity};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::{self, Months, RentRequest, TimelineKind as Kind};
use crate::service;
use crate::service::contract;
use crate::service::renting::Renting;
use crate::storage::history::{self, HistoryRow};
use crate::storage::rentals::{self, RentalRow};
use crate::storage::timeline::{self, Step};

pub type RentalSchema = Schema<Query, Mutation, Subscription>;

/// What the resolvers work with.
pub struct Resolvers {
    database: Database,
    calendar: Calendar,
    renting: Arc<Renting>,
    rentals: BatchLoader<RentalLoader>,
    timelines: BatchLoader<TimelineLoader>,
    hub: Arc<LiveHub>,
    stopping: CancellationToken,
    open_streams: Arc<AtomicUsize>,
}

impl Resolvers {
    pub fn new(
        database: Database,
        calendar: Calendar,
        renting: Arc<Renting>,
        hub: Arc<LiveHub>,
        stopping: CancellationToken,
        open_streams: Arc<AtomicUsize>,
    ) -> Self {
        Self {
            rentals: BatchLoader::new(RentalLoader(database.clone())),
            timelines: BatchLoader::new(TimelineLoader(database.clone())),
            database,
            calendar,
            renting,
            hub,
            stopping,
            open_streams,
        }
    }
}

pub fn schema(resolvers: Arc<Resolvers>) -> RentalSchema {
    // The subscription is part of the supergraph (the router streams it).
    schema_builder(crate::SERVICE, Query, Mutation, Subscription)
        .data(resolvers)
        .enable_subscription_in_federation()
        .finish()
}

fn resolvers<'a>(ctx: &Context<'a>) -> &'a Resolvers {
    state::<Arc<Resolvers>>(ctx)
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "RentalStatus", remote = "crate::domain::RentalStatus")]
pub enum RentalStatus {
    /// Paid; the dispenser is on its way or waiting to ship.
    Accepted,
    /// Delivered and in use; its months are charged as they start.
    Active,
    /// In use, with a monthly charge declined and being retried.
    PastDue,
    /// Cancelled before delivery; the payment is refunded.
    Cancelled,
    /// Ended early (by the customer or an operator, or for non-payment); the unit is
    /// picked up.
    Terminated,
    /// Ran its whole term; the unit is picked up.
    Completed,
}

/// Why a delivered rental ended.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::EndReason")]
pub enum EndReason {
    /// The last month ended.
    Completed,
    /// The customer ended it early; the termination fee applies.
    TerminatedByCustomer,
    /// An operator ended it early; the termination fee applies.
    TerminatedByOperator,
    /// The last automatic attempt to charge a month failed.
    TerminatedForNonPayment,
}

/// What can happen to a rental, as its customer reads it in the timeline.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "TimelineKind", remote = "crate::domain::TimelineKind")]
pub enum TimelineKind {
    /// The first month was charged, at rent.
    Paid,
    DeliveryRequested,
    Shipped,
    /// Delivered: the term starts.
    Delivered,
    Cancelled,
    Refunded,
    /// A later month (see `period`), or the termination fee, was charged.
    Charged,
    /// An attempt to charge an invoice was declined.
    PaymentFailed,
    /// An invoice became past due; it is retried.
    PastDue,
    /// An operator wrote an invoice off.
    InvoiceVoided,
    /// The customer put a new card on file.
    CardUpdated,
    /// The contract was lengthened.
    Extended,
    /// The contract ended early.
    Terminated,
    /// The contract ran its whole term.
    Completed,
    /// The unit is to be collected.
    PickupRequested,
    /// A technician's visit was planned for the pickup.
    PickupScheduled,
    /// A visit was moved to another date.
    VisitRescheduled,
    /// A technician started a visit.
    VisitStarted,
    /// A filter-care visit was done.
    CareVisitDone,
    /// The technician collected the unit.
    PickedUp,
    /// The unit is back in stock.
    Returned,
}

/// A dispenser model, owned by the inventory subgraph; rental only knows its id.
#[derive(SimpleObject, Clone)]
#[graphql(unresolvable = "id")]
pub struct Product {
    pub id: ID,
}

/// An invoice, owned by the payment subgraph; rental only knows its id.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
#[graphql(unresolvable = "id")]
pub struct Invoice {
    pub id: ID,
}

/// A technician's visit, owned by the delivery subgraph; rental only knows its id.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
#[graphql(unresolvable = "id")]
pub struct Visit {
    pub id: ID,
}

/// The contract's term: from the delivery, the agreed number of months.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct Term {
    /// When the term started: the delivery.
    pub starts_on: DateTime<Utc>,
    /// When the term ends (the first instant after its last month).
    pub ends_on: DateTime<Utc>,
    /// Months paid so far, the first (paid at rent) included.
    pub periods_paid: i32,
    /// When the next month is charged; none once every month of the term is charged, or
    /// the rental has ended.
    pub next_charge_on: Option<DateTime<Utc>>,
}

/// One customer's rental of one dispenser: a contract over months.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Rental {
    pub id: ID,
    /// The customer who rents (the subject of their token).
    pub customer_id: ID,
    pub product: Product,
    /// Contract length in months (extensions included).
    pub months: i32,
    /// The monthly fee in won agreed at rental time.
    pub monthly_fee: i32,
    pub delivery_address: String,
    pub status: RentalStatus,
    /// The term, once the dispenser is delivered.
    pub term: Option<Term>,
    /// How and when a delivered rental ended.
    pub end_reason: Option<EndReason>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The fee of an early termination, in won (charged from the card on file).
    pub termination_fee: Option<i32>,
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

/// The term fields of a row of either table.
fn term(
    starts: Option<DateTime<Utc>>,
    ends: Option<DateTime<Utc>>,
    periods_paid: i32,
    next: Option<DateTime<Utc>>,
) -> Option<Term> {
    let (starts_on, ends_on) = starts.zip(ends)?;
    Some(Term { starts_on, ends_on, periods_paid, next_charge_on: next })
}

impl Rental {
    /// From the history read model: the rental and its timeline in one row.
    fn from_history(row: HistoryRow) -> Result<Self, ApiError> {
        let timeline: Vec<TimelineEntry> = serde_json::from_value::<Vec<HistoryStep>>(row.timeline)
            .map_err(ApiError::internal)?
            .into_iter()
            .map(TimelineEntry::from)
            .collect();
        Ok(Self {
            id: ID(row.rental_id.to_string()),
            customer_id: ID(row.customer_id.to_string()),
            product: Product { id: ID(row.product_id.to_string()) },
            months: row.months,
            monthly_fee: row.monthly_fee,
            status: row.status.into(),
            term: term(row.term_starts_at, row.term_ends_at, row.periods_paid, row.next_period_at),
            end_reason: row.end_reason.map(Into::into),
            ended_at: row.ended_at,
            termination_fee: row.termination_fee,
            delivery_address: row.delivery_address,
            created_at: row.created_at,
            updated_at: row.updated_at,
            key: row.rental_id,
            owner: row.customer_id,
            preloaded_timeline: Some(timeline),
        })
    }

    fn from_row(row: RentalRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            customer_id: ID(row.customer_id.to_string()),
            product: Product { id: ID(row.product_id.to_string()) },
            months: row.months,
            monthly_fee: row.monthly_fee,
            status: row.status.into(),
            term: term(row.term_starts_at, row.term_ends_at, row.periods_paid, row.next_period_at),
            end_reason: row.end_reason.map(Into::into),
            ended_at: row.ended_at,
            termination_fee: row.termination_fee,
            delivery_address: row.delivery_address,
            created_at: row.created_at,
            updated_at: row.updated_at,
            key: row.id,
            owner: row.customer_id,
            preloaded_timeline: None,
        }
    }
}

/// A timeline step as the history row keeps it (JSON).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HistoryStep {
    kind: domain::TimelineKind,
    at: DateTime<Utc>,
    period: Option<i32>,
    invoice_id: Option<Uuid>,
    visit_id: Option<Uuid>,
}

/// One thing that happened to a rental.
#[derive(SimpleObject, Clone, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    pub kind: TimelineKind,
    pub at: DateTime<Utc>,
    /// The month of the contract a charge or a decline is about.
    pub period: Option<i32>,
    /// The invoice a charge, a decline or a void is about.
    pub invoice: Option<Invoice>,
    /// The technician's visit a visit step is about.
    pub visit: Option<Visit>,
}

impl From<HistoryStep> for TimelineEntry {
    fn from(step: HistoryStep) -> Self {
        Self {
            kind: step.kind.into(),
            at: step.at,
            period: step.period,
            invoice: step.invoice_id.map(|id| Invoice { id: ID(id.to_string()) }),
            visit: step.visit_id.map(|id| Visit { id: ID(id.to_string()) }),
        }
    }
}

impl From<&Step> for TimelineEntry {
    fn from(step: &Step) -> Self {
        Self {
            kind: step.kind.into(),
            at: step.at,
            period: step.period,
            invoice: step.invoice_id.map(|id| Invoice { id: ID(id.to_string()) }),
            visit: step.visit_id.map(|id| Visit { id: ID(id.to_string()) }),
        }
    }
}

#[async_graphql::ComplexObject]
impl Rental {
    /// What happened so far, oldest first: paid, delivery requested, shipped, delivered,
    /// each month charged (or declined), extended, ended, picked up... The other
    /// services' steps arrive by event, so an entry can appear a moment after the change
    /// it records; the rental's own (cancelled, extended, terminated) show at once.
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
        for step in timeline::of_rentals(&self.0, keys).await? {
            timelines.entry(step.rental_id).or_default().push(TimelineEntry::from(&step));
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
        Ok(rentals::find_many(&self.0, keys).await?.into_iter().map(|row| (row.id, Rental::from_row(row))).collect())
    }
}

fn no_such_rental(id: Uuid) -> ApiError {
    ApiError::not_found(format!("there is no rental with id {id}"))
}

/// A rental the caller may see. Another customer's rental reads exactly like a missing
/// one, so ids cannot be probed.
async fn visible_rental(ctx: &Context<'_>, caller: &Identity, id: Uuid) -> Result<Rental, ApiError> {
    let rental = resolvers(ctx).rentals.load_one(id).await?;
    rental.filter(|rental| caller.may_see_customer(rental.owner)).ok_or_else(|| no_such_rental(id))
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

    /// The calling customer's rentals, newest first, each with its status, term and
    /// timeline: read from the history read model, one indexed read per page.
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
    /// The card to charge the first month's fee to, kept on file (as a token) for the
    /// months after. Test cards: 4242424242424242 approves, 4000000000000002 declines,
    /// 4000000000000341 approves at rent and declines every later month. Only the token,
    /// brand, last four digits and expiry are kept.
    pub card_number: String,
    /// The card's expiry month (1-12) and year; test cards may leave both out.
    pub card_exp_month: Option<i32>,
    pub card_exp_year: Option<i32>,
    /// Any unique string (a UUID is a good choice). Retrying with the same key and the
    /// same input returns the same rental and never charges twice.
    pub idempotency_key: String,
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Rents a dispenser: charges the first month at once, then accepts the rental; a
    /// delivery is requested right after. The term starts at delivery, and each later
    /// month is charged from the same card as it starts. Customers only.
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
            (input.card_exp_month, input.card_exp_year),
            &input.idempotency_key,
        )?;
        let row = resolvers(ctx).renting.rent(customer_id, request).await?;
        Ok(Rental::from_row(row))
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
        Ok(Rental::from_row(row))
    }

    /// Lengthens an active rental by 1-60 months at the same fee (its customer only,
    /// before the term ends). Billing goes on into the new months.
    async fn extend_rental(&self, ctx: &Context<'_>, id: ID, months: i32) -> Result<Rental> {
        let caller = identity(ctx)?;
        let rental_id = parse_id(&id, "rental")?;
        let months = Months::parse(months)?;
        let resolvers = resolvers(ctx);
        let row = contract::extend(&resolvers.database, &resolvers.calendar, caller, rental_id, months).await?;
        Ok(Rental::from_row(row))
    }

    /// Ends a delivered rental before its term is over (its customer or an operator):
    /// the termination fee (60 % of the daily fee for each day left) is charged at once
    /// from the card on file, later months are never charged, and the unit is picked up.
    /// Terminating a terminated rental returns it as it is; before delivery, use
    /// cancelRental.
    async fn terminate_rental(&self, ctx: &Context<'_>, id: ID) -> Result<Rental> {
        let caller = identity(ctx)?;
        let rental_id = parse_id(&id, "rental")?;
        let resolvers = resolvers(ctx);
        let row = contract::terminate(&resolvers.database, &resolvers.calendar, caller, rental_id).await?;
        Ok(Rental::from_row(row))
    }
}

/// Something that happened to a rental, live.
#[derive(SimpleObject, Clone)]
pub struct RentalActivity {
    pub kind: TimelineKind,
    pub at: DateTime<Utc>,
    /// The month of the contract a charge or a decline is about.
    pub period: Option<i32>,
    /// The invoice a charge, a decline or a void is about.
    pub invoice: Option<Invoice>,
    /// The technician's visit a visit step is about.
    pub visit: Option<Visit>,
    /// The rental as it is now.
    pub rental: Rental,
}

pub struct Subscription;

#[async_graphql::Subscription]
impl Subscription {
    /// Everything that happens to a rental, live (its customer or an operator): first
    /// the latest step (the current state), then each new step as it happens: months
    /// charged or declined, past due and back, card updated, extended, terminated or
    /// completed, the pickup and the unit's return. Fields of the other subgraphs
    /// (`invoice { amount }`, `rental { product { name } }`) resolve on every event. When
    /// the service restarts the stream completes early; subscribing again starts with
    /// the current state, and the timeline (`rental { timeline }`) has every step.
    async fn rental_activity(
        &self,
        ctx: &Context<'_>,
        rental_id: ID,
    ) -> Result<impl Stream<Item = Result<RentalActivity>> + use<>> {
        let caller = identity(ctx)?.clone();
        let rental_id = parse_id(&rental_id, "rental")?;
        let resolvers = resolvers(ctx);
        let database = resolvers.database.clone();
        let stopping = resolvers.stopping.clone();
        let open_streams = resolvers.open_streams.clone();
        // Listen first, then read: a change between the two is not missed.
        let mut listener = resolvers.hub.listen(rental_id);
        let current = {
            let mut connection = database.connection().await?;
            rentals::find(&mut connection, rental_id).await?
        };
        if !current.as_ref().is_some_and(|row| caller.may_see_customer(row.customer_id)) {
            return Err(no_such_rental(rental_id).into());
        }
        Ok(async_stream::stream! {
            let _open = OpenStream::new(crate::SERVICE, open_streams);
            let mut sent: HashSet<(domain::TimelineKind, String)> = HashSet::new();
            let mut first = true;
            loop {
                let read = async {
                    let mut connection = database.connection().await?;
                    let rental = rentals::find(&mut connection, rental_id).await?.ok_or_else(|| no_such_rental(rental_id))?;
                    let steps = timeline::of_rental(&mut connection, rental_id).await?;
                    Ok::<_, ApiError>((rental, steps))
                };
                let (row, steps) = match read.await {
                    Ok(found) => found,
                    Err(error) => {
                        yield Err(error.into());
                        break;
                    }
                };
                let rental = Rental::from_row(row);
                let new: Vec<&Step> = if first {
                    // The current state: the latest step; the rest is history.
                    first = false;
                    sent.extend(steps.iter().map(|step| (step.kind, step.occurrence.clone())));
                    steps.last().into_iter().collect()
                } else {
                    steps.iter().filter(|step| sent.insert((step.kind, step.occurrence.clone()))).collect()
                };
                let mut finished = false;
                for step in new {
                    let entry = TimelineEntry::from(step);
                    finished |= ends_the_activity(step.kind, &steps);
                    yield Ok(RentalActivity {
                        kind: entry.kind,
                        at: entry.at,
                        period: entry.period,
                        invoice: entry.invoice,
                        visit: entry.visit,
                        rental: rental.clone(),
                    });
                }
                if finished {
                    break;
                }
                let nudge = tokio::select! {
                    nudge = listener.changed() => nudge,
                    () = stopping.cancelled() => None,
                };
                if nudge.is_none() {
                    break;
                }
            }
        })
    }
}

/// Nothing more happens to a rental once its unit is back in stock, or once a rental
/// cancelled before delivery is refunded.
fn ends_the_activity(kind: Kind, steps: &[Step]) -> bool {
    let has = |wanted: Kind| steps.iter().any(|step| step.kind == wanted);
    match kind {
        Kind::Returned => true,
        Kind::Refunded | Kind::Cancelled => has(Kind::Cancelled) && has(Kind::Refunded),
        _ => false,
    }
}
