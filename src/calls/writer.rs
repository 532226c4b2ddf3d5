//! New calls are stored by group commit: concurrent creates share one INSERT statement and one
//! commit. Each request is still answered only after its own rows are committed. When this
//! instance delivers webhooks, the `started` events are locked for its dispatcher and handed
//! to it once committed, so they go out without waiting for a claim.

use super::repo::{insert_calls, CallInsert};
use crate::config::Settings;
use crate::group_commit::GroupCommit;
use crate::webhooks::dispatcher::{unlock_events, HandOffs};
use sqlx::PgPool;

#[derive(Clone)]
pub struct CallWriter {
    queue: GroupCommit<CallInsert, Result<(), sqlx::Error>>,
}

impl CallWriter {
    /// Starts `calls.insert_writers` tasks, each storing up to `calls.insert_batch_max` calls
    /// per statement.
    pub fn spawn(pool: PgPool, settings: &Settings, hand_offs: HandOffs) -> CallWriter {
        let event_timeout_ms = settings.webhooks.event_timeout_ms;
        let queue = GroupCommit::spawn(settings.calls.insert_writers, settings.calls.insert_batch_max, move |legs: Vec<CallInsert>| {
            let (pool, hand_offs) = (pool.clone(), hand_offs.clone());
            async move {
                // Long enough for a rung inbound leg's two events (started, ringing).
                let lock_s = hand_offs.lock_s(event_timeout_ms, if legs.iter().any(CallInsert::rung) { 2 } else { 1 });
                let all: Vec<&CallInsert> = legs.iter().collect();
                match insert_calls(&pool, &all, lock_s).await {
                    Ok(started) => {
                        if lock_s.is_some() {
                            hand_over(&pool, &hand_offs, &legs, &started).await;
                        }
                        legs.iter().map(|_| Ok(())).collect()
                    }
                    // The statement failed for all: store each alone, so a bad row fails only itself.
                    Err(_) if legs.len() > 1 => {
                        let mut results = Vec::with_capacity(legs.len());
                        for leg in &legs {
                            let stored = insert_calls(&pool, &[leg], lock_s).await;
                            if let (Ok(started), Some(_)) = (&stored, lock_s) {
                                hand_over(&pool, &hand_offs, std::slice::from_ref(leg), started).await;
                            }
                            results.push(stored.map(|_| ()));
                        }
                        results
                    }
                    Err(e) => vec![Err(e)],
                }
            }
        });
        CallWriter { queue }
    }

    /// Stores the leg, its job and its `started` event; returns once they are committed.
    pub async fn insert(&self, leg: CallInsert) -> Result<(), sqlx::Error> {
        self.queue.submit(leg).await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

/// Gives the committed `started` (and `ringing`) events (locked for it) to this instance's dispatcher; if it
/// has stopped, unlocks them for the claim path.
async fn hand_over(pool: &PgPool, hand_offs: &HandOffs, legs: &[CallInsert], started: &[(uuid::Uuid, i64, serde_json::Value)]) {
    let mut refused = Vec::new();
    for leg in legs {
        let stored: Vec<(i64, serde_json::Value)> =
            started.iter().filter(|(uuid, _, _)| *uuid == leg.uuid()).map(|(_, id, payload)| (*id, payload.clone())).collect();
        if stored.is_empty() {
            continue;
        }
        if let Err(chain) = hand_offs.send(leg.stored_hand_off(stored)) {
            refused.extend(chain.events.iter().map(|e| e.id));
        }
    }
    if !refused.is_empty() {
        if let Err(e) = unlock_events(pool, &refused).await {
            tracing::warn!(error = %e, "could not unlock started events after the dispatcher stopped; they go out when the lock expires");
        }
    }
}
