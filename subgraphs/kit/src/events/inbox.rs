//! The inbox: which messages this service has already applied.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

diesel::table! {
    processed_messages (message_id) {
        message_id -> Uuid,
        event_type -> Text,
        processed_at -> Timestamptz,
    }
}

/// Records `message_id` as processed. True the first time; false when the message was
/// applied before, in which case the caller must do nothing. Call it inside the
/// transaction that applies the message, so the record and the effect commit together.
pub async fn claim(connection: &mut AsyncPgConnection, message_id: Uuid, event_type: &str) -> QueryResult<bool> {
    let inserted = diesel::insert_into(processed_messages::table)
        .values((processed_messages::message_id.eq(message_id), processed_messages::event_type.eq(event_type)))
        .on_conflict_do_nothing()
        .execute(connection)
        .await?;
    Ok(inserted == 1)
}
