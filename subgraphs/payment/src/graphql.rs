//! The payment part of the graph: `Payment`, and `Rental.payment` on the rental entity.
//! The charge and void mutations are for the rental service only: `@inaccessible`, so
//! the router's public schema does not show them, and refused to any other caller.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, Enum, ID, InputObject, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::graphql::{EntityRef, identity, parse_id, schema_builder, state, visible};
use subgraph_kit::{ApiError, Database, Identity};
use uuid::Uuid;

use crate::domain::{Amount, CardNumber, ChargeRequest};
use crate::service;
use crate::storage::payments::{self, PaymentRow};

pub type PaymentSchema = Schema<Query, Mutation, EmptySubscription>;

/// What the resolvers work with.
pub struct Resolvers {
    database: Database,
    by_id: BatchLoader<PaymentLoader>,
    by_rental: BatchLoader<PaymentByRentalLoader>,
}

impl Resolvers {
    pub fn new(database: Database) -> Self {
        Self {
            by_id: BatchLoader::new(PaymentLoader(database.clone())),
            by_rental: BatchLoader::new(PaymentByRentalLoader(database.clone())),
            database,
        }
    }
}

pub fn schema(resolvers: Arc<Resolvers>) -> PaymentSchema {
    schema_builder(crate::SERVICE, Query, Mutation, EmptySubscription).data(resolvers).finish()
}

fn resolvers<'a>(ctx: &Context<'a>) -> &'a Resolvers {
    state::<Arc<Resolvers>>(ctx)
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "PaymentStatus", remote = "crate::domain::PaymentStatus")]
pub enum PaymentStatusValue {
    /// The first month's fee was charged to the card.
    Paid,
    /// The charge was paid back to the card.
    Refunded,
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
    pub status: PaymentStatusValue,
    pub paid_at: DateTime<Utc>,
    pub refunded_at: Option<DateTime<Utc>>,
    #[graphql(skip)]
    pub owner: Uuid,
}

impl Payment {
    fn from_row(row: PaymentRow) -> Result<Self, ApiError> {
        Ok(Self {
            id: ID(row.id.to_string()),
            rental: Rental(EntityRef::new(row.rental_id)),
            amount: row.amount,
            status: row.status()?.into(),
            card_last4: row.card_last4,
            paid_at: row.paid_at,
            refunded_at: row.refunded_at,
            owner: row.customer_id,
        })
    }
}

/// The rental entity, owned by the rental subgraph; payment adds its `payment` field.
#[derive(Clone)]
pub struct Rental(EntityRef);

#[Object]
impl Rental {
    async fn id(&self) -> &ID {
        &self.0.id
    }

    /// The rental's payment, once charged.
    async fn payment(&self, ctx: &Context<'_>) -> Result<Option<Payment>> {
        let payment = resolvers(ctx).by_rental.load_one(self.0.key).await?;
        let key = self.0.key;
        Ok(visible(identity(ctx)?, payment, |payment| payment.owner, || no_such_rental(key))?)
    }
}

fn no_such_rental(id: Uuid) -> ApiError {
    ApiError::not_found(format!("there is no rental with id {id}"))
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
        payments_by(payments::find_many(&self.0, keys).await?, |row| row.id)
    }
}

/// Loads the payments of many rentals in one query.
pub struct PaymentByRentalLoader(Database);

impl BatchFetch for PaymentByRentalLoader {
    type Key = Uuid;
    type Value = Payment;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Payment>, ApiError> {
        payments_by(payments::find_by_rentals(&self.0, keys).await?, |row| row.rental_id)
    }
}

async fn visible_payment(ctx: &Context<'_>, id: Uuid) -> Result<Payment, ApiError> {
    let payment = resolvers(ctx).by_id.load_one(id).await?;
    let no_such_payment = || ApiError::not_found(format!("there is no payment with id {id}"));
    visible(identity(ctx)?, payment, |payment| payment.owner, no_such_payment)?.ok_or_else(no_such_payment)
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
        Ok(Rental(EntityRef::parse(id, "rental")?))
    }
}

/// What the rental service asks to charge.
#[derive(InputObject)]
#[graphql(inaccessible)]
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

#[Object]
impl Mutation {
    /// Charges a rental's first month; idempotent per rental.
    #[graphql(inaccessible)]
    async fn charge_rental(&self, ctx: &Context<'_>, input: ChargeRentalInput) -> Result<Payment> {
        require_service(ctx)?;
        let card = CardNumber::parse(&input.card_number).map_err(ApiError::bad_input)?;
        let request = ChargeRequest {
            rental_id: parse_id(&input.rental_id, "rental")?,
            customer_id: parse_id(&input.customer_id, "customer")?,
            amount: Amount::parse(input.amount)?,
            card,
        };
        let row = service::charge(&resolvers(ctx).database, request).await?;
        Ok(Payment::from_row(row)?)
    }

    /// Calls off a rental's charge: refunds it, or makes sure it never happens.
    #[graphql(inaccessible)]
    async fn void_rental_charge(&self, ctx: &Context<'_>, rental_id: ID) -> Result<Option<Payment>> {
        require_service(ctx)?;
        let rental_id = parse_id(&rental_id, "rental")?;
        let row = service::void(&resolvers(ctx).database, rental_id).await?;
        Ok(row.map(Payment::from_row).transpose()?)
    }
}
