//! `GET /console/api/stream`: the account's calls as server-sent events. First a `snapshot`
//! (its newest calls, live or not), then a `calls` event whenever calls start, change state or
//! end (read from the instance's live feed, `console::live`), and a comment every 15 s so a
//! dead connection is noticed. The stream ends when the session does.

use super::session::ConsoleCaller;
use crate::calls::repo::ENDED_STATUSES;
use crate::console::live::{self, LiveCall};
use crate::console::sessions;
use crate::http::error::ApiError;
use crate::startup::AppState;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use uuid::Uuid;

const RECENT_CALLS: i64 = 50;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
const SESSION_CHECK: Duration = Duration::from_secs(60);

/// The response body: what the connection's task sends, until it stops or the client leaves.
struct Events(mpsc::Receiver<Bytes>);

impl futures_util::Stream for Events {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|b| b.map(Ok))
    }
}

fn event(name: &str, calls: &[&LiveCall]) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {}\n\n", json!({ "calls": calls })))
}

/// What the page was told: calls still live as last sent; calls it saw end only remembered (the
/// last few thousand), so a long session does not grow with the account's history.
#[derive(Default)]
struct Told {
    live: HashMap<Uuid, LiveCall>,
    ended: HashSet<Uuid>,
    ended_order: VecDeque<Uuid>,
}

impl Told {
    fn is_news(&self, call: &LiveCall) -> bool {
        !self.ended.contains(&call.uuid) && self.live.get(&call.uuid) != Some(call)
    }

    fn remember(&mut self, call: LiveCall) {
        if !ENDED_STATUSES.contains(&call.status.as_str()) {
            self.live.insert(call.uuid, call);
            return;
        }
        self.live.remove(&call.uuid);
        if self.ended.insert(call.uuid) {
            self.ended_order.push_back(call.uuid);
            if self.ended_order.len() > 5000 {
                if let Some(old) = self.ended_order.pop_front() {
                    self.ended.remove(&old);
                }
            }
        }
    }
}

pub async fn stream(state: web::Data<AppState>, caller: ConsoleCaller) -> Result<HttpResponse, ApiError> {
    let account_id = caller.account().id;
    let recent = live::recent(&state.pool, account_id, RECENT_CALLS).await?;
    let (tx, rx) = mpsc::channel(16);
    let mut feed = state.console_feed.subscribe(account_id);
    let source = state.console_feed.clone();
    let pool = state.pool.clone();
    let token = caller.token;
    tokio::spawn(async move {
        let first: Vec<&LiveCall> = recent.iter().collect();
        if tx.send(Bytes::from_static(b"retry: 2000\n\n")).await.is_err() || tx.send(event("snapshot", &first)).await.is_err() {
            return;
        }
        let mut told = Told::default();
        for call in recent {
            told.remember(call);
        }
        let mut keep_alive = tokio::time::interval(KEEP_ALIVE);
        let mut session_check = tokio::time::interval(SESSION_CHECK);
        keep_alive.tick().await;
        session_check.tick().await;
        loop {
            let message = tokio::select! {
                changed = feed.rx.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let snapshot = feed.rx.borrow_and_update().clone();
                    let mut seen = HashSet::new();
                    let mut changes: Vec<LiveCall> = Vec::new();
                    let mine = snapshot.live.get(&account_id).into_iter().flatten().chain(snapshot.ended.get(&account_id).into_iter().flatten());
                    for call in mine {
                        seen.insert(call.uuid);
                        if told.is_news(call) {
                            changes.push(call.clone());
                        }
                    }
                    // Shown live but gone from the feed without its ending (it ended before the
                    // feed first saw it): read how it ended.
                    let missing: Vec<Uuid> = told.live.keys().filter(|u| !seen.contains(*u)).copied().collect();
                    if !missing.is_empty() {
                        if let Ok(now) = live::legs(&pool, &missing).await {
                            for call in now {
                                if ENDED_STATUSES.contains(&call.status.as_str()) {
                                    changes.push(call);
                                } else {
                                    // Live by its status yet without a job: not worth asking again.
                                    told.live.remove(&call.uuid);
                                }
                            }
                        }
                    }
                    if changes.is_empty() {
                        continue;
                    }
                    let message = event("calls", &changes.iter().collect::<Vec<_>>());
                    for call in changes {
                        told.remember(call);
                    }
                    message
                }
                _ = keep_alive.tick() => Bytes::from_static(b": keep-alive\n\n"),
                _ = source.closed() => return,
                _ = session_check.tick() => {
                    if !sessions::is_open(&pool, &token).await.unwrap_or(true) {
                        let _ = tx.send(Bytes::from_static(b"event: signed-out\ndata: {}\n\n")).await;
                        return;
                    }
                    continue;
                }
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(Events(rx)))
}
