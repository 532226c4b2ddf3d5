//! Group commit: concurrent writers hand their work to a few tasks that store whatever is queued
//! together, in one transaction, and answer each writer once it is committed.
//!
//! Every commit waits for a WAL flush and costs the database a transaction; under load those,
//! not the rows, bound the write rate. With little traffic a task finds one item and stores it
//! alone, so nothing waits for company.

use std::future::Future;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Mutex};

type Queued<T, R> = (T, oneshot::Sender<R>);

pub struct GroupCommit<T, R> {
    queue: mpsc::UnboundedSender<Queued<T, R>>,
}

impl<T, R> Clone for GroupCommit<T, R> {
    fn clone(&self) -> Self {
        GroupCommit { queue: self.queue.clone() }
    }
}

impl<T: Send + 'static, R: Send + 'static> GroupCommit<T, R> {
    /// Starts `tasks` tasks; each calls `store` with up to `max_batch` queued items, which must
    /// return one result per item, in order.
    pub fn spawn<F, Fut>(tasks: usize, max_batch: usize, store: F) -> GroupCommit<T, R>
    where
        F: Fn(Vec<T>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let (queue, waiting) = mpsc::unbounded_channel::<Queued<T, R>>();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..tasks.max(1) {
            let (waiting, store) = (waiting.clone(), store.clone());
            tokio::spawn(async move {
                loop {
                    // One task at a time takes what is queued; the others store meanwhile.
                    let batch = {
                        let mut waiting = waiting.lock().await;
                        let Some(first) = waiting.recv().await else { return };
                        let mut batch = vec![first];
                        while batch.len() < max_batch.max(1) {
                            match waiting.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                        batch
                    };
                    let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
                    for (reply, result) in replies.into_iter().zip(store(items).await) {
                        let _ = reply.send(result);
                    }
                }
            });
        }
        GroupCommit { queue }
    }

    /// Queues `item` and waits for its result; None if the tasks are gone (runtime shutting down).
    pub async fn submit(&self, item: T) -> Option<R> {
        let (reply, result) = oneshot::channel();
        self.queue.send((item, reply)).ok()?;
        result.await.ok()
    }
}
