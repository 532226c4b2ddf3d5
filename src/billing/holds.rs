//! Credit holds by group commit: every hold queued at that moment is taken by one statement, so
//! an account with many calls answered at once has its row locked once per group, not once per
//! call (one account's calls otherwise queue on that row lock, one transaction after another).

use super::ledger::{self, Hold};
use crate::group_commit::GroupCommit;
use sqlx::PgPool;

#[derive(Clone)]
pub struct CreditHolds {
    pool: PgPool,
    queue: GroupCommit<Hold, Result<bool, String>>,
}

impl CreditHolds {
    /// Starts one task taking up to `max_batch` holds per statement on its own connection
    /// (`connection`); `pool` settles pending settlements when a hold is refused.
    pub fn spawn(pool: PgPool, connection: PgPool, max_batch: usize) -> CreditHolds {
        // Connects and prepares the statement now, not on the first answered call (tens of ms).
        let warm = connection.clone();
        tokio::spawn(async move {
            if let Err(e) = ledger::take_holds(&warm, &[]).await {
                tracing::warn!(error = %e, "preparing the credit hold statement failed; the first hold prepares it");
            }
        });
        // One task: a second would only wait for the first's lock on a shared account row.
        let queue = GroupCommit::spawn(1, max_batch, move |holds: Vec<Hold>| {
            let connection = connection.clone();
            async move { take_group(&connection, holds).await }
        });
        CreditHolds { pool, queue }
    }

    /// Takes the hold; when the account row refuses it, settles what is pending (it may free
    /// credit) and asks once more, so a call near the limit is not cut off for a settlement not
    /// yet applied.
    pub async fn reserve(&self, hold: Hold) -> Result<bool, sqlx::Error> {
        if self.take(hold.clone()).await? {
            return Ok(true);
        }
        ledger::settle(&self.pool).await?;
        self.take(hold).await
    }

    /// Takes the hold on the account row alone (no settling first); false when refused.
    pub async fn take(&self, hold: Hold) -> Result<bool, sqlx::Error> {
        match self.queue.submit(hold).await {
            Some(Ok(taken)) => Ok(taken),
            Some(Err(e)) => Err(sqlx::Error::Protocol(e)),
            // The task is gone: the runtime is shutting down.
            None => Err(sqlx::Error::PoolClosed),
        }
    }
}

async fn take_group(connection: &PgPool, holds: Vec<Hold>) -> Vec<Result<bool, String>> {
    match ledger::take_holds(connection, &holds).await {
        Ok(taken) => taken.into_iter().map(Ok).collect(),
        // The statement took nothing: each hold is tried alone, so one the database refuses
        // fails only its own leg.
        Err(e) if holds.len() > 1 => {
            tracing::warn!(error = %e, holds = holds.len(), "a group of credit holds failed; taking them one by one");
            let mut results = Vec::with_capacity(holds.len());
            for hold in holds {
                results.push(match ledger::take_holds(connection, std::slice::from_ref(&hold)).await {
                    Ok(taken) => Ok(taken.first().copied().unwrap_or(false)),
                    Err(e) => Err(e.to_string()),
                });
            }
            results
        }
        Err(e) => vec![Err(e.to_string())],
    }
}
