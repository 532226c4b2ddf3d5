//! New calls are stored by group commit: concurrent creates share one INSERT statement and one
//! commit. Each request is still answered only after its own rows are committed.

use super::repo::{insert_calls, CallInsert};
use crate::group_commit::GroupCommit;
use sqlx::PgPool;

#[derive(Clone)]
pub struct CallWriter {
    queue: GroupCommit<CallInsert, Result<(), sqlx::Error>>,
}

impl CallWriter {
    /// Starts `writers` tasks, each storing up to `max_batch` calls per statement.
    pub fn spawn(pool: PgPool, writers: usize, max_batch: usize) -> CallWriter {
        let queue = GroupCommit::spawn(writers, max_batch, move |legs: Vec<CallInsert>| {
            let pool = pool.clone();
            async move {
                let all: Vec<&CallInsert> = legs.iter().collect();
                match insert_calls(&pool, &all).await {
                    Ok(()) => legs.iter().map(|_| Ok(())).collect(),
                    // The statement failed for all: store each alone, so a bad row fails only itself.
                    Err(_) if legs.len() > 1 => {
                        let mut results = Vec::with_capacity(legs.len());
                        for leg in &legs {
                            results.push(insert_calls(&pool, &[leg]).await);
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
