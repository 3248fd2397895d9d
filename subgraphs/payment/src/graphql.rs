//! The payment part of the graph: `Payment`, and `Rental.payment` on the rental entity.

use std::collections::HashMap;

use async_graphql::{Context, EmptyMutation, EmptySubscription, ID, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::graphql::{identity, parse_id};
use subgraph_kit::{ApiError, Database};
use uuid::Uuid;

use crate::domain::PaymentStatus;
use crate::storage::{self, PaymentRow};

pub type PaymentSchema = Schema<Query, EmptyMutation, EmptySubscription>;

pub fn schema(database: Database) -> PaymentSchema {
    Schema::build(Query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .data(BatchLoader::new(PaymentLoader(database.clone())))
        .data(BatchLoader::new(PaymentByRentalLoader(database.clone())))
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
