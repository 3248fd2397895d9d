//! The simulated card network's ledger: tokenized cards and captures keyed by the
//! merchant's idempotency key. It lives in payment's database because the network is
//! simulated inside payment; the collector still talks to it in transactions of its own,
//! as it would to a real processor.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::Expiry;
use crate::domain::network::Behaviour;

diesel::table! {
    network_cards (token) {
        token -> Text,
        brand -> Text,
        last4 -> Text,
        exp_month -> Int4,
        exp_year -> Int4,
        behaviour -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    network_captures (idempotency_key) {
        idempotency_key -> Text,
        token -> Text,
        amount -> Int4,
        approved -> Bool,
        decline_reason -> Nullable<Text>,
        captured_at -> Timestamptz,
        refunded_at -> Nullable<Timestamptz>,
    }
}

/// A card the network knows, by token.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = network_cards)]
pub struct NetworkCard {
    pub token: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: i32,
    pub exp_year: i32,
    pub behaviour: Behaviour,
}

impl NetworkCard {
    pub fn expiry(&self) -> Expiry {
        Expiry { month: self.exp_month, year: self.exp_year }
    }
}

/// The network's record of one charge.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = network_captures)]
pub struct Capture {
    pub idempotency_key: String,
    pub token: String,
    pub amount: i32,
    pub approved: bool,
    pub decline_reason: Option<String>,
    pub captured_at: DateTime<Utc>,
}

pub async fn insert_card(connection: &mut AsyncPgConnection, card: &NetworkCard) -> QueryResult<()> {
    diesel::insert_into(network_cards::table).values(card).execute(connection).await?;
    Ok(())
}

/// The cards of `tokens`, in one statement.
pub async fn cards(connection: &mut AsyncPgConnection, tokens: &[String]) -> QueryResult<Vec<NetworkCard>> {
    network_cards::table
        .filter(network_cards::token.eq_any(tokens))
        .select(NetworkCard::as_select())
        .load(connection)
        .await
}

/// Records `decided` captures; a key recorded before keeps its first answer. Returns
/// the captures of all their keys as recorded, the earlier answers included: asking the
/// network twice with one key is answered the same, and captures once.
pub async fn record_captures(connection: &mut AsyncPgConnection, decided: &[Capture]) -> QueryResult<Vec<Capture>> {
    if decided.is_empty() {
        return Ok(Vec::new());
    }
    diesel::insert_into(network_captures::table)
        .values(decided)
        .on_conflict(network_captures::idempotency_key)
        .do_nothing()
        .execute(connection)
        .await?;
    let keys: Vec<&str> = decided.iter().map(|capture| capture.idempotency_key.as_str()).collect();
    network_captures::table
        .filter(network_captures::idempotency_key.eq_any(keys))
        .select(Capture::as_select())
        .load(connection)
        .await
}

/// Pays an approved capture back, once.
pub async fn refund(connection: &mut AsyncPgConnection, idempotency_key: &str, at: DateTime<Utc>) -> QueryResult<()> {
    diesel::update(
        network_captures::table
            .find(idempotency_key)
            .filter(network_captures::approved.eq(true))
            .filter(network_captures::refunded_at.is_null()),
    )
    .set(network_captures::refunded_at.eq(at))
    .execute(connection)
    .await?;
    Ok(())
}

/// The idempotency key of the charge at rent for `rental_id`.
pub fn rent_key(rental_id: Uuid) -> String {
    format!("rent:{rental_id}")
}
