//! The inbox: which messages this service has already applied.

use std::collections::HashSet;

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
    Ok(claim_all(connection, &[(message_id, event_type)]).await?.contains(&message_id))
}

/// [`claim`] for several messages in one statement: the ids recorded now. An id absent
/// from the answer was applied before (or appears twice in `messages`, and only its
/// first copy is to be applied).
pub async fn claim_all(connection: &mut AsyncPgConnection, messages: &[(Uuid, &str)]) -> QueryResult<HashSet<Uuid>> {
    let rows: Vec<_> = messages
        .iter()
        .map(|(id, event_type)| {
            (processed_messages::message_id.eq(*id), processed_messages::event_type.eq(*event_type))
        })
        .collect();
    let claimed: Vec<Uuid> = diesel::insert_into(processed_messages::table)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(processed_messages::message_id)
        .get_results(connection)
        .await?;
    Ok(claimed.into_iter().collect())
}
