//! Where each named conversation stands across the cluster: started (a `startOnEnter` member
//! joined) and ended (an `endOnExit` member left), so members see the same whatever instance
//! their legs run on. PostgreSQL holds it (`conversation_states`, with the members in
//! `conversation_members`); a change is NOTIFYd on `CHANNEL` and each instance re-reads the
//! sessions its members are in, and again every few seconds in case a notification was lost
//! with the LISTEN connection. (The audio of a conversation is another matter: `relay`.)
//!
//! A conversation's life is its `session`: a member joining one that ended, or one with no
//! member left on a live instance, begins the next. Members of a session see a different
//! number in the database as their conversation having ended.

use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Conversations whose state changed; the payload is the application id and the name.
pub const CHANNEL: &str = "outdial_conversations";
/// Re-read even without a notification this often.
const REREAD: Duration = Duration::from_secs(3);

/// One life of a conversation, as this instance's members in it know it.
pub struct Session {
    application_id: Uuid,
    name: String,
    number: i64,
    pub started: watch::Sender<bool>,
    pub ended: watch::Sender<bool>,
    /// Members on this instance.
    members: Mutex<usize>,
}

impl Session {
    fn raise(flag: &watch::Sender<bool>, to: bool) {
        if to {
            flag.send_if_modified(|value| !std::mem::replace(value, true));
        }
    }
}

/// The conversation sessions this instance's members are in.
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<(Uuid, String, i64), Arc<Session>>>,
    /// A notification came: re-read.
    changed: Notify,
}

/// Members counted are those on instances alive within `timeout_ms` ($4).
const LIVE_INSTANCE: &str = "EXISTS (SELECT 1 FROM instances i WHERE i.id = m.instance_id AND i.stopped_at IS NULL
                              AND i.heartbeat_at > now() - make_interval(secs => $4::float8 / 1000))";

impl Sessions {
    /// Makes `leg` a member of conversation `name`, starting it when `start_on_enter`, and
    /// returns the session it is in.
    pub async fn join(&self, pool: &PgPool, instance_id: Uuid, timeout_ms: u64, application_id: Uuid, name: &str, leg: Uuid, start_on_enter: bool) -> Result<Arc<Session>, sqlx::Error> {
        let mut tx = pool.begin().await?;
        // The upsert locks the conversation's row: joins and leaves of one conversation take turns.
        let (number, started, ended): (i64, bool, bool) = sqlx::query_as(
            "INSERT INTO conversation_states (application_id, name) VALUES ($1, $2)
             ON CONFLICT (application_id, name) DO UPDATE SET session = conversation_states.session
             RETURNING session, started, ended",
        )
        .bind(application_id)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?;
        let occupied: bool = sqlx::query_scalar(&format!(
            "WITH gone AS (DELETE FROM conversation_members m WHERE m.application_id = $1 AND m.name = $2 AND NOT {LIVE_INSTANCE})
             SELECT EXISTS (SELECT 1 FROM conversation_members m WHERE m.application_id = $1 AND m.name = $2 AND m.leg_uuid <> $3 AND {LIVE_INSTANCE})"
        ))
        .bind(application_id)
        .bind(name)
        .bind(leg)
        .bind(timeout_ms as f64)
        .fetch_one(&mut *tx)
        .await?;
        let fresh = ended || !occupied;
        let number = if fresh { number + 1 } else { number };
        let was_started = started && !fresh;
        let started = was_started || start_on_enter;
        sqlx::query("UPDATE conversation_states SET session = $3, started = $4, ended = false WHERE application_id = $1 AND name = $2")
            .bind(application_id)
            .bind(name)
            .bind(number)
            .bind(started)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO conversation_members (leg_uuid, application_id, name, instance_id) VALUES ($1, $2, $3, $4)
             ON CONFLICT (leg_uuid) DO UPDATE SET application_id = EXCLUDED.application_id, name = EXCLUDED.name, instance_id = EXCLUDED.instance_id",
        )
        .bind(leg)
        .bind(application_id)
        .bind(name)
        .bind(instance_id)
        .execute(&mut *tx)
        .await?;
        if started && !was_started {
            notify(&mut tx, application_id, name).await?;
        }
        tx.commit().await?;
        let session = self.enter(application_id, name, number);
        Session::raise(&session.started, started);
        Ok(session)
    }

    /// This instance's copy of a session, with one more member.
    fn enter(&self, application_id: Uuid, name: &str, number: i64) -> Arc<Session> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let session = live
            .entry((application_id, name.to_string(), number))
            .or_insert_with(|| {
                Arc::new(Session {
                    application_id,
                    name: name.to_string(),
                    number,
                    started: watch::channel(false).0,
                    ended: watch::channel(false).0,
                    members: Mutex::new(0),
                })
            })
            .clone();
        *session.members.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        session
    }

    /// `leg` leaves; with `end_on_exit` the conversation ends for every member. `stored`:
    /// false when the leg now belongs to another instance, whose membership stays.
    pub async fn leave(&self, pool: &PgPool, session: &Arc<Session>, leg: Uuid, end_on_exit: bool, stored: bool) {
        if end_on_exit {
            Session::raise(&session.ended, true);
        }
        if stored {
            if let Err(e) = store_leave(pool, session, leg, end_on_exit).await {
                tracing::warn!(error = %e, conversation = %session.name, "conversation: the member's leave was not stored");
            }
        }
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let mut members = session.members.lock().unwrap_or_else(|e| e.into_inner());
        *members -= 1;
        if *members == 0 {
            live.remove(&(session.application_id, session.name.clone(), session.number));
        }
    }

    /// A conversation changed somewhere (or notifications may have been lost): re-read.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Re-reads the sessions this instance's members are in and raises what started or ended.
    async fn reread(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let sessions: Vec<Arc<Session>> = self.live.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect();
        if sessions.is_empty() {
            return Ok(());
        }
        let (apps, names): (Vec<Uuid>, Vec<String>) = sessions.iter().map(|s| (s.application_id, s.name.clone())).unzip();
        let rows: Vec<(Uuid, String, i64, bool, bool)> = sqlx::query_as(
            "SELECT s.application_id, s.name, s.session, s.started, s.ended
             FROM conversation_states s JOIN unnest($1::uuid[], $2::text[]) AS w(application_id, name) USING (application_id, name)",
        )
        .bind(&apps)
        .bind(&names)
        .fetch_all(pool)
        .await?;
        let stored: HashMap<(Uuid, String), (i64, bool, bool)> = rows.into_iter().map(|(app, name, number, started, ended)| ((app, name), (number, started, ended))).collect();
        for session in sessions {
            let Some(&(number, started, ended)) = stored.get(&(session.application_id, session.name.clone())) else { continue };
            if number == session.number {
                Session::raise(&session.started, started);
                Session::raise(&session.ended, ended);
            } else {
                Session::raise(&session.ended, true);
            }
        }
        Ok(())
    }

    /// Keeps this instance's sessions in step with the database until `shutdown`.
    pub async fn watch(&self, pool: PgPool, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(REREAD) => {}
            }
            if let Err(e) = self.reread(&pool).await {
                tracing::warn!(error = %e, "conversation: could not re-read conversation states");
            }
        }
    }
}

async fn store_leave(pool: &PgPool, session: &Session, leg: Uuid, end_on_exit: bool) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM conversation_members WHERE leg_uuid = $1").bind(leg).execute(&mut *tx).await?;
    if end_on_exit {
        let ended = sqlx::query("UPDATE conversation_states SET ended = true WHERE application_id = $1 AND name = $2 AND session = $3 AND NOT ended")
            .bind(session.application_id)
            .bind(&session.name)
            .bind(session.number)
            .execute(&mut *tx)
            .await?;
        if ended.rows_affected() > 0 {
            notify(&mut tx, session.application_id, &session.name).await?;
        }
    }
    tx.commit().await
}

async fn notify(tx: &mut sqlx::PgConnection, application_id: Uuid, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(format!("{application_id}/{name}")).execute(tx).await?;
    Ok(())
}
