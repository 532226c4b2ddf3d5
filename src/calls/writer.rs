//! Group commit for new calls: concurrent creates share one INSERT statement and one commit.
//!
//! Each commit waits for a WAL flush; under load the flushes, not the rows, bound how many calls
//! a second the database accepts. A few writer tasks take every create waiting in the queue and
//! store them together; each request is answered only after its commit, as before. With little
//! traffic a writer finds one create and stores it alone, so nothing waits for company.

use super::repo::{insert_calls, CallInsert};
use sqlx::PgPool;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

struct Queued {
    leg: CallInsert,
    stored: oneshot::Sender<Result<(), sqlx::Error>>,
}

#[derive(Clone)]
pub struct CallWriter {
    queue: mpsc::UnboundedSender<Queued>,
}

impl CallWriter {
    /// Starts `writers` tasks, each storing up to `max_batch` calls per statement.
    pub fn spawn(pool: PgPool, writers: usize, max_batch: usize) -> CallWriter {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_loop(pool.clone(), waiting.clone(), max_batch.max(1)));
        }
        CallWriter { queue }
    }

    /// Stores the leg, its job and its `started` event; returns once they are committed.
    pub async fn insert(&self, leg: CallInsert) -> Result<(), sqlx::Error> {
        let (stored, done) = oneshot::channel();
        self.queue.send(Queued { leg, stored }).map_err(|_| sqlx::Error::PoolClosed)?;
        done.await.map_err(|_| sqlx::Error::PoolClosed)?
    }
}

async fn write_loop(pool: PgPool, waiting: Arc<Mutex<mpsc::UnboundedReceiver<Queued>>>, max_batch: usize) {
    loop {
        // One writer at a time takes what is queued; the others are free to write meanwhile.
        let batch = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < max_batch {
                match waiting.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        let legs: Vec<&CallInsert> = batch.iter().map(|q| &q.leg).collect();
        match insert_calls(&pool, &legs).await {
            Ok(()) => batch.into_iter().for_each(|q| drop(q.stored.send(Ok(())))),
            // One statement failed for all: store each alone, so one bad row fails only itself.
            Err(_) if batch.len() > 1 => {
                for q in batch {
                    let result = insert_calls(&pool, &[&q.leg]).await;
                    let _ = q.stored.send(result);
                }
            }
            Err(e) => {
                if let Some(q) = batch.into_iter().next() {
                    let _ = q.stored.send(Err(e));
                }
            }
        }
    }
}
