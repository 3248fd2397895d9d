//! The payment part of the graph: `Payment` (the charge at rent), `Invoice` (every month
//! and fee), and `Rental.payment`, `Rental.paymentMethod`, `Rental.invoices` on the
//! rental entity. The charge and void mutations are for the rental service only:
//! `@inaccessible`, so the router's public schema does not show them, and refused to any
//! other caller.
//!
//! Reads go to `storage` directly (batched per request); changes go through `service`.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, EmptySubscription, Enum, ID, InputObject, Object, Result, Schema, SimpleObject};
use chrono::{DateTime, Utc};
use subgraph_kit::batch::{BatchFetch, BatchLoader};
use subgraph_kit::graphql::{
    PageRequest, RentalRef, connection, identity, parse_id, require_operator, schema_builder, state, visible,
};
use subgraph_kit::{ApiError, Database, Identity, db};
use uuid::Uuid;

use crate::domain::{Amount, CardNumber, ChargeRequest, Expiry};
use crate::service;
use crate::service::billing::Billing;
use crate::storage::invoices::{self, InvoiceRow};
use crate::storage::methods::{self, MethodRow};
use crate::storage::payments::{self, PaymentRow};

pub type PaymentSchema = Schema<Query, Mutation, EmptySubscription>;

/// What the resolvers work with.
pub struct Resolvers {
    database: Database,
    billing: Arc<Billing>,
    by_id: BatchLoader<PaymentLoader>,
    by_rental: BatchLoader<PaymentByRentalLoader>,
    methods: BatchLoader<MethodLoader>,
    invoices: BatchLoader<InvoiceLoader>,
    invoices_by_rental: BatchLoader<InvoicesByRentalLoader>,
}

impl Resolvers {
    pub fn new(database: Database, billing: Arc<Billing>) -> Self {
        Self {
            by_id: BatchLoader::new(PaymentLoader(database.clone())),
            by_rental: BatchLoader::new(PaymentByRentalLoader(database.clone())),
            methods: BatchLoader::new(MethodLoader(database.clone())),
            invoices: BatchLoader::new(InvoiceLoader(database.clone())),
            invoices_by_rental: BatchLoader::new(InvoicesByRentalLoader(database.clone())),
            database,
            billing,
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
    fn from_row(row: PaymentRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            rental: Rental(RentalRef::new(row.rental_id)),
            amount: row.amount,
            status: row.status.into(),
            card_last4: row.card_last4,
            paid_at: row.paid_at,
            refunded_at: row.refunded_at,
            owner: row.customer_id,
        }
    }
}

/// The card a rental's months are charged to. Only its token is kept (with the network);
/// the number is never stored.
#[derive(SimpleObject, Clone)]
pub struct PaymentMethod {
    /// VISA, MASTERCARD, AMEX, or CARD.
    pub brand: String,
    pub last4: String,
    pub exp_month: i32,
    pub exp_year: i32,
    pub updated_at: DateTime<Utc>,
    #[graphql(skip)]
    pub owner: Uuid,
}

impl From<MethodRow> for PaymentMethod {
    fn from(row: MethodRow) -> Self {
        Self {
            brand: row.brand,
            last4: row.last4,
            exp_month: row.exp_month,
            exp_year: row.exp_year,
            updated_at: row.updated_at,
            owner: row.customer_id,
        }
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::InvoiceStatus")]
pub enum InvoiceStatus {
    /// Due, and not charged yet (or its first attempt is under way).
    Pending,
    /// Charged to the card on file.
    Paid,
    /// Declined; tried again at `nextAttemptAt`, or not automatically any more once that
    /// is empty (`payInvoice` still can).
    Failed,
    /// Written off by an operator: never charged.
    Void,
    /// Paid, then paid back (the first month of a rental cancelled before delivery).
    Refunded,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::domain::InvoiceKind")]
pub enum InvoiceKind {
    /// One month of the contract.
    Period,
    /// The fee for ending the contract early.
    TerminationFee,
}

/// What a rental's customer owes for one month of the contract, or for ending it early.
#[derive(SimpleObject, Clone)]
pub struct Invoice {
    pub id: ID,
    pub rental: Rental,
    pub kind: InvoiceKind,
    /// The month of the contract it is for (1 is the first, paid at rent); none for a fee.
    pub period: Option<i32>,
    /// The span of the month it is for (the first month's is known once the term starts).
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    /// In won.
    pub amount: i32,
    pub status: InvoiceStatus,
    /// Attempts to charge it so far.
    pub attempts: i32,
    /// When it is charged (again) automatically; none once paid, voided, or out of retries.
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    /// Why the last attempt was declined.
    pub failure_reason: Option<String>,
    pub voided_at: Option<DateTime<Utc>>,
    pub refunded_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    pub key: Uuid,
    #[graphql(skip)]
    pub owner: Uuid,
}

impl From<InvoiceRow> for Invoice {
    fn from(row: InvoiceRow) -> Self {
        Self {
            id: ID(row.id.to_string()),
            rental: Rental(RentalRef::new(row.rental_id)),
            kind: row.kind.into(),
            period: row.period,
            period_start: row.period_start,
            period_end: row.period_end,
            amount: row.amount,
            status: row.status.into(),
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            paid_at: row.paid_at,
            failure_reason: row.failure_reason,
            voided_at: row.voided_at,
            refunded_at: row.refunded_at,
            created_at: row.created_at,
            key: row.id,
            owner: row.customer_id,
        }
    }
}

/// The rental entity, owned by the rental subgraph; payment adds its money fields.
#[derive(Clone)]
pub struct Rental(RentalRef);

#[Object]
impl Rental {
    async fn id(&self) -> &ID {
        self.0.id()
    }

    /// The charge of the first month, at rent.
    async fn payment(&self, ctx: &Context<'_>) -> Result<Option<Payment>> {
        let payment = resolvers(ctx).by_rental.load_one(self.0.key()).await?;
        Ok(self.0.visible_one(identity(ctx)?, payment, |payment| payment.owner)?)
    }

    /// The card on file that the months are charged to.
    async fn payment_method(&self, ctx: &Context<'_>) -> Result<Option<PaymentMethod>> {
        let method = resolvers(ctx).methods.load_one(self.0.key()).await?;
        Ok(self.0.visible_one(identity(ctx)?, method, |method| method.owner)?)
    }

    /// Every invoice of the rental, oldest first: each month (the first paid at rent)
    /// and the fee of an early termination.
    async fn invoices(&self, ctx: &Context<'_>) -> Result<Vec<Invoice>> {
        let invoices = resolvers(ctx).invoices_by_rental.load_one(self.0.key()).await?;
        Ok(self.0.visible_all(identity(ctx)?, invoices, |invoice| invoice.owner)?)
    }
}

fn no_such_invoice(id: Uuid) -> ApiError {
    ApiError::not_found(format!("there is no invoice with id {id}"))
}

/// Loads payments by id in batches.
pub struct PaymentLoader(Database);

impl BatchFetch for PaymentLoader {
    type Key = Uuid;
    type Value = Payment;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Payment>, ApiError> {
        let rows = payments::find_many(&self.0, keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, Payment::from_row(row))).collect())
    }
}

/// Loads the payments of many rentals in one query.
pub struct PaymentByRentalLoader(Database);

impl BatchFetch for PaymentByRentalLoader {
    type Key = Uuid;
    type Value = Payment;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Payment>, ApiError> {
        let rows = payments::find_by_rentals(&self.0, keys).await?;
        Ok(rows.into_iter().map(|row| (row.rental_id, Payment::from_row(row))).collect())
    }
}

/// Loads the cards on file of many rentals in one query.
pub struct MethodLoader(Database);

impl BatchFetch for MethodLoader {
    type Key = Uuid;
    type Value = PaymentMethod;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, PaymentMethod>, ApiError> {
        let rows = methods::find_by_rentals(&self.0, keys).await?;
        Ok(rows.into_iter().map(|row| (row.rental_id, row.into())).collect())
    }
}

/// Loads invoices by id in batches.
pub struct InvoiceLoader(Database);

impl BatchFetch for InvoiceLoader {
    type Key = Uuid;
    type Value = Invoice;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Invoice>, ApiError> {
        let rows = invoices::find_many(&self.0, keys).await?;
        Ok(rows.into_iter().map(|row| (row.id, row.into())).collect())
    }
}

/// Loads the invoices of many rentals in one query.
pub struct InvoicesByRentalLoader(Database);

impl BatchFetch for InvoicesByRentalLoader {
    type Key = Uuid;
    type Value = Vec<Invoice>;

    async fn fetch(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<Invoice>>, ApiError> {
        let mut by_rental: HashMap<Uuid, Vec<Invoice>> = HashMap::new();
        for row in invoices::find_by_rentals(&self.0, keys).await? {
            by_rental.entry(row.rental_id).or_default().push(row.into());
        }
        Ok(by_rental)
    }
}

async fn visible_payment(ctx: &Context<'_>, id: Uuid) -> Result<Payment, ApiError> {
    let payment = resolvers(ctx).by_id.load_one(id).await?;
    let no_such_payment = || ApiError::not_found(format!("there is no payment with id {id}"));
    visible(identity(ctx)?, payment, |payment| payment.owner, no_such_payment)?.ok_or_else(no_such_payment)
}

async fn visible_invoice(ctx: &Context<'_>, id: Uuid) -> Result<Invoice, ApiError> {
    let invoice = resolvers(ctx).invoices.load_one(id).await?;
    visible(identity(ctx)?, invoice, |invoice| invoice.owner, || no_such_invoice(id))?
        .ok_or_else(|| no_such_invoice(id))
}

pub struct Query;

#[Object]
impl Query {
    /// One payment: customers see their own, operators see any.
    async fn payment(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Payment>> {
        let id = parse_id(&id, "payment")?;
        Ok(Some(visible_payment(ctx, id).await?))
    }

    /// One invoice: customers see their own, operators see any.
    async fn invoice(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Invoice>> {
        let id = parse_id(&id, "invoice")?;
        Ok(Some(visible_invoice(ctx, id).await?))
    }

    /// Every customer's invoices, oldest first, for the accounts team: all `FAILED` ones
    /// to follow up, say (operators only).
    async fn invoices(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only invoices in this status.")] status: Option<InvoiceStatus>,
        #[graphql(desc = "How many invoices to return (1-100, default 20).")] first: Option<i32>,
        #[graphql(desc = "The endCursor of the previous page.")] after: Option<String>,
    ) -> Result<Connection<String, Invoice>> {
        require_operator(ctx, "list every customer's invoices")?;
        let page = PageRequest::parse("invoices", first, after.as_deref())?;
        let rows = invoices::page(&resolvers(ctx).database, status.map(Into::into), &page).await?;
        Ok(connection(&page, rows.into_iter().map(Invoice::from).collect(), |invoice| invoice.key))
    }

    #[graphql(entity)]
    async fn find_payment_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Payment> {
        let id = parse_id(&id, "payment")?;
        Ok(visible_payment(ctx, id).await?)
    }

    #[graphql(entity)]
    async fn find_invoice_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Invoice> {
        let id = parse_id(&id, "invoice")?;
        Ok(visible_invoice(ctx, id).await?)
    }

    #[graphql(entity)]
    async fn find_rental_by_id(&self, id: ID) -> Result<Rental> {
        Ok(Rental(RentalRef::from_representation(id)?))
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
    /// The full card number. Used for this one authorization and its token, never
    /// stored: only the token and the last four digits are kept.
    pub card_number: String,
    /// The card's expiry; test cards may leave it out.
    pub exp_month: Option<i32>,
    pub exp_year: Option<i32>,
}

fn require_service(ctx: &Context<'_>) -> Result<(), ApiError> {
    match identity(ctx)? {
        Identity::Service { .. } => Ok(()),
        _ => Err(ApiError::forbidden("only other services may charge or void payments")),
    }
}

/// A card's expiry as given, or the one assumed for a test card given without one.
fn expiry(month: Option<i32>, year: Option<i32>) -> Result<Expiry, ApiError> {
    let now = db::now();
    match (month, year) {
        (Some(month), Some(year)) => Expiry::parse(month, year, now)
            .map_err(|refused| ApiError::bad_input(refused.describe("expMonth", "expYear", month, year))),
        (None, None) => Ok(Expiry::assumed(now)),
        _ => Err(ApiError::bad_input("give both expMonth and expYear, or neither")),
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Charges a rental's first month and keeps the card on file; idempotent per rental.
    #[graphql(inaccessible)]
    async fn charge_rental(&self, ctx: &Context<'_>, input: ChargeRentalInput) -> Result<Payment> {
        require_service(ctx)?;
        let card = CardNumber::parse(&input.card_number).map_err(ApiError::bad_input)?;
        let request = ChargeRequest {
            rental_id: parse_id(&input.rental_id, "rental")?,
            customer_id: parse_id(&input.customer_id, "customer")?,
            amount: Amount::parse(input.amount)?,
            expiry: expiry(input.exp_month, input.exp_year)?,
            card,
        };
        let row = service::charge(&resolvers(ctx).database, request).await?;
        Ok(Payment::from_row(row))
    }

    /// Calls off a rental's charge: refunds it, or makes sure it never happens.
    #[graphql(inaccessible)]
    async fn void_rental_charge(&self, ctx: &Context<'_>, rental_id: ID) -> Result<Option<Payment>> {
        require_service(ctx)?;
        let rental_id = parse_id(&rental_id, "rental")?;
        let row = service::void(&resolvers(ctx).database, rental_id).await?;
        Ok(row.map(Payment::from_row))
    }

    /// Replaces the card a rental's months are charged to (the rental's customer only).
    /// Any invoice of the rental that is past due is charged to the new card at once.
    /// Only the card's token, brand, last four digits and expiry are kept.
    async fn update_payment_method(
        &self,
        ctx: &Context<'_>,
        rental_id: ID,
        #[graphql(desc = "The new card's number: 4242424242424242 approves every charge.")] card_number: String,
        exp_month: i32,
        exp_year: i32,
    ) -> Result<PaymentMethod> {
        let caller = identity(ctx)?;
        if caller.customer_id().is_none() {
            return Err(ApiError::forbidden("only the rental's customer may change the card it is paid with").into());
        }
        let rental_id = parse_id(&rental_id, "rental")?;
        let card = CardNumber::parse(&card_number).map_err(ApiError::bad_input)?;
        let expiry = Expiry::parse(exp_month, exp_year, db::now())
            .map_err(|refused| ApiError::bad_input(refused.describe("expMonth", "expYear", exp_month, exp_year)))?;
        let method = resolvers(ctx).billing.replace_card(caller, rental_id, card, expiry).await?;
        Ok(method.into())
    }

    /// Charges a past-due invoice now, to the card on file (its customer, or an
    /// operator). A decline leaves it FAILED with the reason; paying a paid, voided or
    /// refunded invoice is refused.
    async fn pay_invoice(&self, ctx: &Context<'_>, id: ID) -> Result<Invoice> {
        let id = parse_id(&id, "invoice")?;
        let invoice = visible_invoice(ctx, id).await?;
        let status: crate::domain::InvoiceStatus = invoice.status.into();
        status.pay_now().map_err(ApiError::from)?;
        Ok(resolvers(ctx).billing.collect_one(id).await?.into())
    }

    /// Writes off an invoice that is not paid, so it is never charged (operators only).
    /// Voiding a void invoice returns it as it is.
    async fn void_invoice(&self, ctx: &Context<'_>, id: ID) -> Result<Invoice> {
        require_operator(ctx, "void invoices")?;
        let id = parse_id(&id, "invoice")?;
        Ok(resolvers(ctx).billing.void(id).await?.into())
    }
}
