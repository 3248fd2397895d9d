//! The payment part of the graph: `Payment`, and `Rental.payment` on the rental entity.

use std::collections::HashMap;

use async_graphql::{Context, EmptySubscription, ID, InputObject, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::graphql::{identity, parse_id};
use subgraph_kit::server::Wiring;
use subgraph_kit::{ApiError, Database, Identity};
use uuid::Uuid;

use crate::domain::PaymentStatus;
use crate::storage::{self, PaymentRow};

pub type PaymentSchema = Schema<Query, Mutation, EmptySubscription>;

pub fn schema(wiring: &Wiring) -> PaymentSchema {
    let database = wiring.database.clone();
    Schema::build(Query, Mutation, EmptySubscription)
        .enable_federation()
        .data(BatchLoader::new(PaymentLoader(database.clone())))
        .data(BatchLoader::new(PaymentByRentalLoader(database.clone())))
        .data(wiring.relay.clone())
        .data(database)
        .finish()
}

/// The charge for a rental's first month, and its refund if the rental was cancelled.
#[derive(SimpleObject, Clone)]
pub struct Payment {
    pub id: ID,
    pub rental: Rental,
    /// Amount charged in won.
    pub amount: i32,
    /// The last four digits of the card; the full number is never stored.
    pub card_last4: String,
    pub status: PaymentStatus,
    pub paid_at: DateTime<Utc>,
    pub refunded_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    pub owner: Uuid,
}

impl Payment {
    fn from_row(row: PaymentRow) -> Result<Self, ApiError> {
        Ok(Self {
            id: ID(row.id.to_string()),
            rental: Rental { id: ID(row.rental_id.to_string()), key: row.rental_id },
            amount: row.amount,
            status: row.status()?,
            card_last4: row.card_last4,
            paid_at: row.paid_at,
            refunded_at: row.refunded_at,
            owner: row.customer_id,
        })
    }
}

/// The rental entity, owned by the rental subgraph; payment adds its `payment` field.
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

    /// The rental's payment, once charged.
    async fn payment(&self, ctx: &Context<'_>) -> Result<Option<Payment>> {
        let caller = identity(ctx)?;
        let payment = ctx.data_unchecked::<BatchLoader<PaymentByRentalLoader>>().load_one(self.key).await?;
        match payment {
            Some(payment) if !caller.may_see_customer(payment.owner) => {
                Err(ApiError::not_found(format!("there is no rental with id {}", self.key)).into())
            }
            payment => Ok(payment),
        }
    }
}

fn payments_by<K: std::hash::Hash + Eq>(
    rows: Vec<PaymentRow>,
    key: impl Fn(&PaymentRow) -> K,
) -> Result<HashMap<K, Payment>, ApiError> {
    rows.into_iter().map(|row| Ok((key(&row), Payment::from_row(row)?))).collect()
}

/// Loads payments by id in batches.
pub struct PaymentLoader(Database);

impl BatchFetch for PaymentLoader {
    type Key = Uuid;
    type Value = Payment;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Payment>, ApiError> {
        payments_by(storage::find_many(&self.0, keys).await?, |row| row.id)
    }
}

/// Loads the payments of many rentals in one query.
pub struct PaymentByRentalLoader(Database);

impl BatchFetch for PaymentByRentalLoader {
    type Key = Uuid;
    type Value = Payment;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Payment>, ApiError> {
        payments_by(storage::find_by_rentals(&self.0, keys).await?, |row| row.rental_id)
    }
}

async fn visible_payment(ctx: &Context<'_>, id: Uuid) -> Result<Payment, ApiError> {
    let caller = identity(ctx)?;
    let payment = ctx.data_unchecked::<BatchLoader<PaymentLoader>>().load_one(id).await?;
    payment
        .filter(|payment| caller.may_see_customer(payment.owner))
        .ok_or_else(|| ApiError::not_found(format!("there is no payment with id {id}")))
}

pub struct Query;

#[Object]
impl Query {
    /// One payment: customers see their own, operators see any.
    async fn payment(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Payment>> {
        let id = parse_id(&id, "payment")?;
        Ok(Some(visible_payment(ctx, id).await?))
    }

    #[graphql(entity)]
    async fn find_payment_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Payment> {
        let id = parse_id(&id, "payment")?;
        Ok(visible_payment(ctx, id).await?)
    }

    #[graphql(entity)]
    async fn find_rental_by_id(&self, id: ID) -> Result<Rental> {
        let key = parse_id(&id, "rental")?;
        Ok(Rental { id, key })
    }
}

/// What the rental service asks to charge. Service to service only.
#[derive(InputObject)]
pub struct ChargeRentalInput {
    pub rental_id: ID,
    pub customer_id: ID,
    /// Amount in won: the first month's fee.
    pub amount: i32,
    /// The full card number. Used for this one authorization and never stored: only the
    /// last four digits are kept.
    pub card_number: String,
}

fn require_service(ctx: &Context<'_>) -> Result<(), ApiError> {
    match identity(ctx)? {
        Identity::Service { .. } => Ok(()),
        _ => Err(ApiError::forbidden("only other services may charge or void payments")),
    }
}

pub struct Mutation;

/// Called by the rental service directly, never through the router: the fields are
/// `@inaccessible`, so they are not part of the public API.
#[Object]
impl Mutation {
    /// Charges a rental's first month; idempotent per rental.
    #[graphql(inaccessible)]
    async fn charge_rental(&self, ctx: &Context<'_>, input: ChargeRentalInput) -> Result<Payment> {
        require_service(ctx)?;
        let card = crate::domain::CardNumber::parse(&input.card_number).map_err(ApiError::bad_input)?;
        let request = crate::charges::ChargeRequest {
            rental_id: parse_id(&input.rental_id, "rental")?,
            customer_id: parse_id(&input.customer_id, "customer")?,
            amount: input.amount,
            card,
        };
        let row = crate::charges::charge(ctx.data_unchecked::<Database>(), request).await?;
        ctx.data_unchecked::<subgraph_kit::events::outbox::RelayWaker>().wake();
        Ok(Payment::from_row(row)?)
    }

    /// Calls off a rental's charge: refunds it, or makes sure it never happens.
    #[graphql(inaccessible)]
    async fn void_rental_charge(&self, ctx: &Context<'_>, rental_id: ID) -> Result<Option<Payment>> {
        require_service(ctx)?;
        let rental_id = parse_id(&rental_id, "rental")?;
        let row = crate::charges::void(ctx.data_unchecked::<Database>(), rental_id).await?;
        ctx.data_unchecked::<subgraph_kit::events::outbox::RelayWaker>().wake();
        Ok(row.map(Payment::from_row).transpose()?)
    }
}
