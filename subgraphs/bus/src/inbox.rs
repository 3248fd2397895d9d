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

/// Records `messages` (id and event type) as processed, in one statement, and returns
/// the ids recorded now. An id absent from the answer was applied before, and the caller
/// must do nothing for it (or it appears twice in `messages`, and only its first copy
/// is to be applied). Call it inside the transaction that applies the messages, so the
/// records and the effects commit together.
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
