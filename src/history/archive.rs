//! Retention: old legs leave the hot `calls` table in small batches, after their hours are
//! sealed (so reports over them still answer, from the rollup) and, when asked, after each
//! account's CDR of them is written to a file.

use super::{cdr, Window};
use chrono::{DateTime, Duration, DurationRound, Utc};
use futures_util::StreamExt;
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

#[derive(Debug, Default, serde::Serialize)]
pub struct Archived {
    /// Legs created before this were archived: the requested time, rounded down to the hour and
    /// to what is sealed.
    pub before: Option<DateTime<Utc>>,
    pub legs: u64,
    pub files: Vec<PathBuf>,
}

/// Legs deleted per transaction: short enough not to hold up the live traffic's writes.
const BATCH: i64 = 5_000;

pub async fn archive(pool: &PgPool, before: DateTime<Utc>, grace: std::time::Duration, export_dir: Option<&Path>) -> anyhow::Result<Archived> {
    let sealed = super::rollup::seal(pool, grace).await?;
    let Some(sealed) = sealed else { return Ok(Archived::default()) };
    let cutoff = before.duration_trunc(Duration::hours(1))?.min(sealed);
    let mut archived = Archived { before: Some(cutoff), ..Archived::default() };

    if let Some(dir) = export_dir {
        tokio::fs::create_dir_all(dir).await?;
        let accounts: Vec<(i64,)> = sqlx::query_as("SELECT DISTINCT account_id FROM call_counts WHERE hour < $1 ORDER BY 1")
            .bind(cutoff)
            .fetch_all(pool)
            .await?;
        for (account_id,) in accounts {
            let path = dir.join(format!("calls-account{account_id}-before-{}.csv", cutoff.format("%Y%m%dT%H%M%SZ")));
            let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(&path).await?);
            // The window is inclusive at its end: stop a microsecond before the cutoff.
            let window = Window { start: None, end: Some(cutoff - Duration::microseconds(1)) };
            let mut rows = cdr::export(pool, account_id, window).await?;
            while let Some(chunk) = rows.next().await {
                file.write_all(&chunk?).await?;
            }
            file.flush().await?;
            file.into_inner().sync_all().await?;
            archived.files.push(path);
        }
    }

    loop {
        // A connected leg's parent may be archived before it: the child keeps its row, without
        // the link. Events, jobs and commands go with their leg (ON DELETE CASCADE).
        let deleted = sqlx::query(
            "WITH v AS (SELECT uuid FROM calls WHERE created_at < $1 LIMIT $2),
                  unlink AS (UPDATE calls SET parent_uuid = NULL
                             WHERE parent_uuid IN (SELECT uuid FROM v) AND uuid NOT IN (SELECT uuid FROM v))
             DELETE FROM calls WHERE uuid IN (SELECT uuid FROM v)",
        )
        .bind(cutoff)
        .bind(BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        archived.legs += deleted;
        if deleted == 0 {
            break;
        }
    }
    // Their counts go with them (the list no longer shows them); the rollup stays for reports.
    sqlx::query("DELETE FROM call_counts WHERE hour < $1").bind(cutoff).execute(pool).await?;
    Ok(archived)
}
