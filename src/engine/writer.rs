//! Legs' writes by group commit: a few tasks take every write queued at that moment and store
//! them in one statement, so concurrent legs share a round trip, a plan and a commit (one WAL
//! flush) instead of paying each for every state change. A leg goes on only once its own write
//! is committed.

use super::store::{self, Change, LegWrite, StoreError, Written};
use crate::group_commit::GroupCommit;
use sqlx::PgPool;
use std::collections::HashSet;
use uuid::Uuid;

/// The write's outcome, and its change handed back (the leg passes its events on).
pub type WriteResult = (Change, Result<Written, StoreError>);

#[derive(Clone)]
pub struct LegWriter {
    queue: GroupCommit<LegWrite, WriteResult>,
}

impl LegWriter {
    /// Starts `tasks` tasks, each storing up to `max_batch` writes per statement.
    pub fn spawn(pool: PgPool, instance: Uuid, tasks: usize, max_batch: usize) -> LegWriter {
        let queue = GroupCommit::spawn(tasks, max_batch, move |writes: Vec<LegWrite>| {
            let pool = pool.clone();
            async move { store_batch(&pool, instance, writes).await }
        });
        LegWriter { queue }
    }

    pub async fn write(&self, write: LegWrite) -> WriteResult {
        // None: the tasks are gone, the runtime is shutting down.
        self.queue.submit(write).await.unwrap_or_else(|| (Change::default(), Err(StoreError::Database(sqlx::Error::PoolClosed))))
    }
}

async fn store_batch(pool: &PgPool, instance: Uuid, writes: Vec<LegWrite>) -> Vec<WriteResult> {
    let mut results = Vec::with_capacity(writes.len());
    for group in distinct_legs(writes) {
        match store::apply(pool, instance, &group).await {
            Ok(outcomes) => results.extend(group.into_iter().zip(outcomes).map(|(w, r)| (w.change, r))),
            // The statement stored nothing: each write is tried alone, so a write the database
            // refuses fails only its own leg.
            Err(e) if group.len() > 1 => {
                tracing::warn!(error = %e, writes = group.len(), "a group of leg writes failed; storing them one by one");
                for w in group {
                    let result = match store::apply(pool, instance, std::slice::from_ref(&w)).await {
                        Ok(mut outcomes) => outcomes.pop().unwrap_or(Err(StoreError::LostOwnership)),
                        Err(e) => Err(StoreError::Database(e)),
                    };
                    results.push((w.change, result));
                }
            }
            Err(e) => {
                let w = group.into_iter().next().expect("a group holds a write");
                results.push((w.change, Err(StoreError::Database(e))));
            }
        }
    }
    results
}

/// Splits the writes, in order, into groups where each leg appears once (one statement updates
/// a row once). A leg waits for its write before the next, so this is one group in practice.
fn distinct_legs(writes: Vec<LegWrite>) -> Vec<Vec<LegWrite>> {
    let mut groups: Vec<Vec<LegWrite>> = vec![];
    let mut seen = HashSet::new();
    for w in writes {
        if groups.is_empty() || !seen.insert(w.leg) {
            seen.clear();
            seen.insert(w.leg);
            groups.push(vec![]);
        }
        groups.last_mut().expect("a group").push(w);
    }
    groups
}
