//! Driving one leg: dial, ring, answer (or not), run the NCCO, hang up, price, with every
//! status written as it happens.

use super::answer::{self, Reply, Target};
use super::store::{Change, Finish, LegWrite, NewEvent, StoreError};
use super::EngineCtx;
use crate::billing;
use crate::calls::format_time;
use crate::carrier::{CalleeBehaviour, CarrierEvent, DialRequest, EndReason, LegHandle, MediaCommand, Reported};
use crate::ncco::{parse_endpoint, Endpoint, Ncco};
use crate::validation::Problems;
use crate::webhooks::dispatcher::{HandOff, HandedEvent};
use crate::webhooks::signing::Signer;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

pub const LEG_COLUMNS: &str = "c.uuid, c.conversation_uuid, c.account_id, c.application_id, c.direction, c.status, c.to_endpoint, c.from_endpoint, \
    c.ncco, c.answer_url, c.answer_method, c.event_url, c.event_method, c.fallback_url, c.machine_detection, \
    c.advanced_machine_detection, c.length_timer_s, c.ringing_timer_s, c.answered_at, c.last_seq, \
    a.signed_callbacks, acc.api_key, acc.signature_secret, COALESCE(c.caller_behaviour, sb.behaviour) AS sandbox_behaviour, c.user_data, \
    c.sip_options, c.sip";

pub const LEG_JOINS: &str = "JOIN applications a ON a.id = c.application_id JOIN accounts acc ON acc.id = c.account_id \
    LEFT JOIN sandbox_numbers sb ON sb.account_id = c.account_id AND sb.number = c.to_endpoint->>'number'";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LegRow {
    pub uuid: Uuid,
    pub conversation_uuid: String,
    pub account_id: i64,
    pub application_id: Uuid,
    /// `outbound` (placed through the API) or `inbound` (a call to one of the account's numbers).
    pub direction: String,
    pub status: String,
    pub to_endpoint: Value,
    pub from_endpoint: Option<Value>,
    pub ncco: Option<Value>,
    pub answer_url: Option<String>,
    pub answer_method: String,
    pub event_url: Option<String>,
    pub event_method: String,
    pub fallback_url: Option<String>,
    pub machine_detection: Option<String>,
    pub advanced_machine_detection: Option<Value>,
    pub length_timer_s: i32,
    pub ringing_timer_s: i32,
    pub answered_at: Option<DateTime<Utc>>,
    pub last_seq: i32,
    pub signed_callbacks: bool,
    pub api_key: String,
    pub signature_secret: String,
    /// The simulated callee's behaviour (the sandbox number's), or an inbound sandbox caller's.
    pub sandbox_behaviour: Option<Value>,
    /// The caller's own string, sent in every event of the call.
    pub user_data: Option<String>,
    /// The call's SIP options (`sip` on POST /v1/calls).
    pub sip_options: Option<Value>,
    /// The SIP facts the carrier reported (dialog state for a takeover).
    pub sip: Option<Value>,
}

/// Why the leg stops running its NCCO.
#[derive(Debug)]
pub enum Stop {
    /// The callee hung up.
    Remote,
    /// length_timer ran out, or the NCCO ended: the platform hangs up.
    Platform,
    /// The database no longer says we own this leg: another instance does. Write nothing more.
    Fenced,
    /// The API asked to hang up.
    Hangup,
    /// The API transferred the leg to a new NCCO, which replaces the running one.
    Transfer(Ncco),
    Internal(String),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Stop {
        match e {
            StoreError::LostOwnership => Stop::Fenced,
            StoreError::Database(db) => Stop::Internal(db.to_string()),
        }
    }
}

pub type Step<T> = Result<T, Stop>;

/// The `detail` of a call ended because the account's credit ran out.
pub const INSUFFICIENT_CREDIT: &str = "insufficient_credit";

pub struct Leg {
    pub ctx: Arc<EngineCtx>,
    pub row: LegRow,
    pub to: String,
    pub from: String,
    pub seq: i32,
    last_timestamp: DateTime<Utc>,
    pub handle: Option<LegHandle>,
    /// When the answered leg must end (length_timer, or earlier when the credit runs out).
    pub hangup_at: Option<Instant>,
    /// Answered seconds granted by the account's credit so far (None: calls are free, no limit).
    credit_s: Option<i64>,
    /// What this leg holds on the account for those seconds (their price).
    reserved: rust_decimal::Decimal,
    /// The deck entry that prices this leg (None inside: no entry matches), looked up once, when
    /// the leg is dialled (see `rate`): its credit hold and its final price use the same entry.
    rate: Option<Option<billing::Rate>>,
    /// hangup_at is when the granted credit runs out, not the length_timer.
    ends_for_credit: bool,
    /// When the carrier reported the answer (monotonic), to measure simulated duration.
    answered_wall: Option<Instant>,
    pub answered_at: Option<DateTime<Utc>>,
    /// When the carrier reported that the callee hung up (wall and monotonic): the call's end,
    /// however late the leg gets to it.
    pub callee_hung_up: Option<(DateTime<Utc>, Instant)>,
    /// The customer's application closed this websocket leg: its `disconnected` event is owed.
    pub disconnected_owed: bool,
    /// DTMF the callee pressed that no input has consumed yet (bargeIn, early keys).
    pub pending_dtmf: VecDeque<char>,
    pub beeped: bool,
    next_play_id: u64,
    /// Playback ids that run in the background (bargeIn) and stop at the next input.
    pub background_playback: Vec<u64>,
    /// An asynchronous input streams each key here.
    pub async_dtmf: Option<(String, String)>,
    pub background_recording: Option<super::actions::BackgroundRecording>,
    /// The ending status and detail written for a leg that never connected.
    pub last_status: Option<String>,
    pub last_detail: Option<String>,
    /// Wakes the leg when the API sent it a command.
    pub commands: Option<super::commands::CommandLine>,
    /// Commands this leg already applied or rejected (one may reach it twice: see commands).
    pub handled_commands: std::collections::HashSet<i64>,
    /// History lines (what the callee heard…) written with the leg's next change.
    pending_log: Vec<NewEvent>,
    /// What the API is playing into the call (PUT …/stream, …/talk).
    pub api_stream: Option<u64>,
    pub api_talk: Option<u64>,
    /// SIP facts the carrier reported, written with the leg's next change.
    pub pending_sip: Option<Value>,
    /// The leg's real audio, when the carrier has it (SIP): recorder, recognizer and
    /// detector read it.
    pub media: Option<crate::media::MediaTap>,
    /// What those readers found (a recording ended, speech recognized…), for `next`.
    pub audio_events: super::audio_tasks::AudioEvents,
}

/// The flat address (`to`/`from` in webhooks) of a stored endpoint.
pub fn address_of(endpoint: &Value) -> String {
    let mut problems = Problems::default();
    parse_endpoint(endpoint, "", &mut problems).map(|e| e.address().to_string()).unwrap_or_default()
}

/// Drives a claimed leg, registered for commands (`commands`); `rate` is its deck entry when
/// the claim already looked it up.
pub async fn drive(ctx: Arc<EngineCtx>, row: LegRow, rate: Option<Option<billing::Rate>>, commands: super::commands::CommandLine) {
    drive_with(ctx, row, rate, commands, None).await
}

/// Drives a leg the network already set up (an inbound call: `handle` is the caller's line).
pub async fn drive_with(
    ctx: Arc<EngineCtx>,
    row: LegRow,
    rate: Option<Option<billing::Rate>>,
    commands: super::commands::CommandLine,
    handle: Option<LegHandle>,
) {
    use tracing::Instrument;
    let uuid = row.uuid;
    let inbound = row.direction == "inbound";
    let mut leg = Leg::new(ctx.clone(), row);
    // A claim looks rates up by the number dialled; an inbound leg's is the number called's.
    leg.rate = if inbound { None } else { rate };
    leg.handle = handle;
    leg.commands = Some(commands);
    let result = leg.run().instrument(tracing::info_span!("leg", call_uuid = %uuid)).await;
    ctx.commands.unregister(uuid);
    match result {
        Ok(()) | Err(Stop::Fenced) => {}
        Err(Stop::Internal(cause)) => {
            tracing::error!(call_uuid = %uuid, cause, "leg failed; ending it");
            if let Err(e) = leg.end_after_failure().await {
                tracing::error!(call_uuid = %uuid, error = ?e, "could not end the failed leg");
            }
        }
        Err(other) => tracing::warn!(call_uuid = %uuid, stop = ?other, "leg stopped unexpectedly"),
    }
}

impl Leg {
    pub fn new(ctx: Arc<EngineCtx>, row: LegRow) -> Leg {
        Leg {
            to: address_of(&row.to_endpoint),
            from: row.from_endpoint.as_ref().map(address_of).unwrap_or_default(),
            seq: row.last_seq,
            last_timestamp: Utc::now() - chrono::Duration::seconds(1),
            answered_at: row.answered_at,
            ctx,
            row,
            handle: None,
            hangup_at: None,
            credit_s: None,
            reserved: rust_decimal::Decimal::ZERO,
            rate: None,
            ends_for_credit: false,
            answered_wall: None,
            callee_hung_up: None,
            disconnected_owed: false,
            pending_dtmf: VecDeque::new(),
            beeped: false,
            next_play_id: 1,
            background_playback: Vec::new(),
            async_dtmf: None,
            background_recording: None,
            last_status: None,
            last_detail: None,
            commands: None,
            handled_commands: Default::default(),
            pending_log: Vec::new(),
            api_stream: None,
            api_talk: None,
            pending_sip: None,
            media: None,
            audio_events: Default::default(),
        }
    }

    /// Signs webhooks when the application asks for signed callbacks.
    pub fn signer(&self) -> Option<Signer> {
        self.row.signed_callbacks.then(|| self.account_signer())
    }

    /// The account's signature secret as a signer, whatever the application's webhooks.
    fn account_signer(&self) -> Signer {
        Signer { api_key: self.row.api_key.clone(), application_id: self.row.application_id, secret: self.row.signature_secret.clone() }
    }

    /// The Authorization header of a websocket endpoint's upgrade: the custom value as given,
    /// or for `{"type": "vonage"}` a short-lived token signed with the account's signature secret
    /// (as signed webhooks are), so the customer's server can check the connection is ours.
    fn websocket_authorization(&self, to: &Endpoint) -> Option<String> {
        let Endpoint::Websocket { authorization: Some(authorization), .. } = to else { return None };
        match authorization["type"].as_str() {
            Some("vonage") => Some(self.account_signer().websocket_authorization(self.row.uuid, &self.row.conversation_uuid)),
            _ => authorization["value"].as_str().map(str::to_string),
        }
    }

    /// Vonage's `disconnected` event, owed when the customer's application closed this
    /// websocket leg (once: None after the first call), stamped when it closed. It carries the
    /// endpoint's `headers`.
    pub fn disconnected_payload(&mut self) -> Option<Value> {
        if !std::mem::take(&mut self.disconnected_owed) {
            return None;
        }
        let closed = self.callee_hung_up.map_or_else(Utc::now, |(wall, _)| wall);
        let ts = self.timestamp_at(closed);
        let mut payload = self.payload_stamped("disconnected", ts);
        if let Some(headers) = self.row.to_endpoint.get("headers").filter(|h| h.is_object()) {
            payload["headers"] = headers.clone();
        }
        Some(payload)
    }

    /// Now, as a timestamp of this leg.
    fn timestamp(&mut self) -> DateTime<Utc> {
        self.timestamp_at(Utc::now())
    }

    /// `moment` (when it happened: a carrier's report, or now) as a timestamp of this leg.
    /// Timestamps strictly increase within a leg, even within one clock tick.
    fn timestamp_at(&mut self, moment: DateTime<Utc>) -> DateTime<Utc> {
        let ts = moment.max(self.last_timestamp + chrono::Duration::milliseconds(1));
        self.last_timestamp = ts;
        ts
    }

    /// The fields every status event carries, stamped now.
    pub fn base_payload(&mut self, status: &str) -> Value {
        let ts = self.timestamp();
        self.payload_stamped(status, ts)
    }

    fn payload_stamped(&self, status: &str, ts: DateTime<Utc>) -> Value {
        json!({
            "from": self.from, "to": self.to, "uuid": self.row.uuid,
            "conversation_uuid": self.row.conversation_uuid, "status": status,
            "direction": self.row.direction, "timestamp": format_time(ts),
        })
    }

    /// Every event of a call carries the caller's `user_data`, when it gave one.
    fn stamp_user_data(&self, payload: &mut Value) {
        if let (Some(user_data), Value::Object(fields)) = (&self.row.user_data, payload) {
            fields.entry("user_data").or_insert_with(|| json!(user_data));
        }
    }

    /// An event for the leg's event_url, to be delivered by the outbox.
    pub fn event(&mut self, kind: &str, mut payload: Value) -> NewEvent {
        self.stamp_user_data(&mut payload);
        self.seq += 1;
        NewEvent {
            seq: self.seq,
            kind: kind.to_string(),
            payload,
            url: self.row.event_url.clone(),
            method: self.row.event_method.clone(),
            state: "pending",
            attempts: Vec::new(),
        }
    }

    pub fn event_to(&mut self, kind: &str, mut payload: Value, url: Option<String>, method: &str, state: &'static str) -> NewEvent {
        self.stamp_user_data(&mut payload);
        self.seq += 1;
        NewEvent { seq: self.seq, kind: kind.to_string(), payload, url, method: method.to_string(), state, attempts: Vec::new() }
    }

    pub async fn write(&mut self, mut change: Change) -> Step<Vec<i64>> {
        if let Some(sip) = self.pending_sip.take() {
            self.row.sip = Some(sip.clone());
            change.sip = Some(sip);
        }
        let logged = self.pending_log.len();
        if logged > 0 {
            let mut events = std::mem::take(&mut self.pending_log);
            events.append(&mut change.events);
            change.events = events;
        }
        let pending = change.events.iter().filter(|e| e.state == "pending").count();
        let hand_off_lock_s = self.ctx.hand_off_lock_s(pending);
        // The leg's last write: counted once stored, by how it ended.
        let ended = change.finish.as_ref().map(|finish| finish.ending.clone().or_else(|| change.status.clone()).unwrap_or_else(|| "completed".into()));
        let write = LegWrite { leg: self.row.uuid, last_seq: self.seq, change, hand_off_lock_s };
        let (change, written) = self.ctx.writer.write(write).await;
        let written = written?;
        if let Some(status) = ended {
            crate::metrics::leg_ended(&status, &self.row.direction);
        }
        if written.handed_off && pending > 0 {
            let events = change
                .events
                .into_iter()
                .zip(&written.ids)
                .filter(|(e, _)| e.state == "pending")
                .map(|(e, id)| HandedEvent { id: *id, payload: e.payload, url: e.url, method: e.method })
                .collect();
            let chain = HandOff { call_uuid: self.row.uuid, application_id: self.row.application_id, after: written.after, events };
            self.ctx.hand_off(chain).await;
        } else if pending > 0 {
            self.ctx.wake_dispatchers();
        }
        Ok(written.ids.into_iter().skip(logged).collect())
    }

    /// A line of the call's history that is not a webhook (what the callee heard, …), now.
    pub fn log(&mut self, what: &str) {
        self.log_at(what, Utc::now());
    }

    /// A line of the call's history, as the carrier reported it at `moment`.
    pub fn log_at(&mut self, what: &str, moment: DateTime<Utc>) {
        let ts = self.timestamp_at(moment);
        let payload = json!({"uuid": self.row.uuid, "what": what, "timestamp": format_time(ts)});
        self.seq += 1;
        self.pending_log.push(NewEvent { seq: self.seq, kind: "media".into(), payload, url: None, method: "POST".into(), state: "logged", attempts: Vec::new() });
    }

    /// A status change with its one event, happening now.
    pub async fn status(&mut self, status: &str, extra: Value) -> Step<()> {
        self.status_at(status, extra, Utc::now()).await
    }

    /// A status change that happened at `moment` (the carrier's report), with its one event.
    pub async fn status_at(&mut self, status: &str, extra: Value, moment: DateTime<Utc>) -> Step<()> {
        let ts = self.timestamp_at(moment);
        let mut payload = self.payload_stamped(status, ts);
        merge(&mut payload, extra);
        let event = self.event(status, payload);
        self.write(Change { status: Some(status.into()), events: vec![event], ..Default::default() }).await?;
        Ok(())
    }

    /// A non-status event (machine/human, record, transfer, error…).
    pub async fn side_event(&mut self, kind: &str, payload: Value) -> Step<()> {
        let event = self.event(kind, payload);
        self.write(Change { events: vec![event], ..Default::default() }).await?;
        Ok(())
    }

    pub fn control(&self, command: MediaCommand) {
        if let Some(handle) = &self.handle {
            let _ = handle.control.send(command);
        }
    }

    pub fn play_id(&mut self) -> u64 {
        self.next_play_id += 1;
        self.next_play_id
    }

    async fn run(&mut self) -> Step<()> {
        match self.row.status.as_str() {
            "started" if self.row.direction == "inbound" => return self.run_inbound().await,
            // Stored ringing by this instance, which holds the caller's line (not a takeover).
            "ringing" if self.row.direction == "inbound" && self.handle.is_some() => return self.run_inbound().await,
            "started" => {}
            // Another instance was driving this leg and died: end it cleanly rather than
            // guess at what the callee heard.
            "ringing" => {
                self.release_taken_over().await;
                return self.end_unanswered("failed", Some("internal_error")).await;
            }
            "completed" | "busy" | "cancelled" | "failed" | "rejected" | "timeout" | "unanswered" => {
                return self.write(Change { finish: Some(self.zero_finish()), ..Default::default() }).await.map(|_| ());
            }
            _ => {
                self.release_taken_over().await;
                return self.hang_up("platform").await;
            }
        }
        let by_machine = match self.dial_and_ring().await? {
            Some(by_machine) => by_machine,
            None => return Ok(()),
        };
        self.answer().await?;
        let outcome = self.after_answer(by_machine).await;
        match outcome {
            Ok(()) | Err(Stop::Platform) | Err(Stop::Hangup) => self.hang_up("platform").await,
            Err(Stop::Remote) => self.hang_up("user").await,
            Err(other) => Err(other),
        }
    }

    /// A call to one of our numbers: rings the caller while the application's NCCO is fetched,
    /// answers, runs it. A caller who hangs up first makes it `cancelled`; an application that
    /// does not answer with an NCCO gets an `error` event and the caller a 480 or 500.
    async fn run_inbound(&mut self) -> Step<()> {
        if self.handle.is_none() {
            if self.ctx.carrier.name() == "sip" {
                // Taken over from a dead instance before it rang: the caller's dialog was there.
                self.release_taken_over().await;
                return self.end_unanswered("failed", Some("internal_error")).await;
            }
            // The sandbox's caller, on the simulated network.
            let behaviour = self.row.sandbox_behaviour.clone().and_then(|b| serde_json::from_value::<CalleeBehaviour>(b).ok());
            let mut problems = Problems::default();
            let to = parse_endpoint(&self.row.to_endpoint, "to", &mut problems).unwrap_or(Endpoint::App { user: String::new() });
            self.handle = Some(self.ctx.carrier.dial(DialRequest {
                leg_uuid: self.row.uuid,
                account_id: self.row.account_id,
                to,
                from: self.from.clone(),
                behaviour,
                routes: Vec::new(),
                sip: Default::default(),
                inbound: true,
                websocket_authorization: None,
            }));
        }
        self.control(MediaCommand::Ring);
        if self.row.status != "ringing" {
            self.status("ringing", json!({})).await?;
        }
        let request = self.answer_request();
        let ctx = self.ctx.clone();
        let mut handle = self.handle.take().expect("an inbound leg has its caller's line");
        let fetched = {
            let fetch = request.send(&ctx.client);
            tokio::pin!(fetch);
            loop {
            tokio::select! {
                fetched = &mut fetch => break Some(fetched),
                event = handle.events.recv() => match event {
                    Some(Reported { event: CarrierEvent::Ended(_), wall, .. }) => {
                        self.callee_hung_up = Some((wall, Instant::now()));
                        break None;
                    }
                    None => break None,
                    Some(Reported { event: CarrierEvent::Log(line), wall, .. }) => self.log_at(&line, wall),
                    Some(Reported { event: CarrierEvent::Sip(facts), .. }) => self.pending_sip = Some(facts),
                    Some(_) => {}
                },
            }
            }
        };
        self.handle = Some(handle);
        let Some((reply, attempts)) = fetched else {
            let (at, _) = self.callee_hung_up.take().unwrap_or_else(|| (Utc::now(), Instant::now()));
            return self.end_unanswered_at("cancelled", None, at).await;
        };
        // The caller is answered as soon as the application gave an NCCO; the request's record
        // is written with `answered`.
        if matches!(reply, Reply::Ncco(_)) {
            self.control(MediaCommand::Answer);
        }
        let ncco = match self.answer_replied(request, reply, attempts, true).await? {
            Ok(ncco) => ncco,
            Err(code) => {
                self.control(MediaCommand::Reject(code));
                return self.end_unanswered("failed", Some("answer_failed")).await;
            }
        };
        if !self.wait_answered().await? {
            return Ok(());
        }
        self.answer().await?;
        match super::actions::run_ncco(self, ncco).await {
            Ok(()) | Err(Stop::Platform) | Err(Stop::Hangup) => self.hang_up("platform").await,
            Err(Stop::Remote) => self.hang_up("user").await,
            Err(other) => Err(other),
        }
    }

    /// After `Answer`: true once the network answered the caller; false when the caller hung
    /// up first (`cancelled`) or the answer failed (`failed`), both written.
    async fn wait_answered(&mut self) -> Step<bool> {
        const ANSWER_WAIT: Duration = Duration::from_secs(10);
        let deadline = Instant::now() + ANSWER_WAIT;
        loop {
            let handle = self.handle.as_mut().expect("an inbound leg has its caller's line");
            tokio::select! {
                event = handle.events.recv() => match event {
                    Some(Reported { event: CarrierEvent::Answered { .. }, wall, at }) => {
                        self.answered_wall = Some(at);
                        self.answered_at = Some(self.timestamp_at(wall));
                        return Ok(true);
                    }
                    Some(Reported { event: CarrierEvent::Media(tap), .. }) => self.media = Some(tap),
                    Some(Reported { event: CarrierEvent::Log(line), wall, .. }) => self.log_at(&line, wall),
                    Some(Reported { event: CarrierEvent::Sip(facts), .. }) => self.pending_sip = Some(facts),
                    Some(Reported { event: CarrierEvent::Ended(EndReason::Failed(detail)), wall, .. }) => {
                        self.end_unanswered_at("failed", Some(&detail), wall).await?;
                        return Ok(false);
                    }
                    Some(Reported { event: CarrierEvent::Ended(_), wall, .. }) => {
                        self.end_unanswered_at("cancelled", None, wall).await?;
                        return Ok(false);
                    }
                    Some(_) => {}
                    None => return Err(Stop::Internal("the carrier dropped the inbound leg".into())),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    self.control(MediaCommand::Hangup);
                    self.end_unanswered("failed", Some("internal_error")).await?;
                    return Ok(false);
                }
            }
        }
    }

    /// A leg taken over from a dead instance: its dialog, if it had one on a real network, is
    /// ended there (BYE, or CANCEL while ringing) from the state that instance stored.
    async fn release_taken_over(&mut self) {
        let Some(sip) = self.row.sip.clone() else { return };
        if let Some(line) = self.ctx.carrier.release(sip).await {
            self.log(&line);
        }
    }

    /// Dials and rings until answered (Some(by_machine)) or ended before answer (None).
    pub async fn dial_and_ring(&mut self) -> Step<Option<bool>> {
        let behaviour = self.row.sandbox_behaviour.clone().and_then(|b| serde_json::from_value::<CalleeBehaviour>(b).ok());
        let mut problems = Problems::default();
        let to = parse_endpoint(&self.row.to_endpoint, "to", &mut problems).unwrap_or(Endpoint::App { user: String::new() });
        let options: crate::calls::SipOptions = self.row.sip_options.clone().and_then(|o| serde_json::from_value(o).ok()).unwrap_or_default();
        // A websocket endpoint is a WebSocket to the customer's server, whatever the network.
        let carrier = if matches!(to, Endpoint::Websocket { .. }) { self.ctx.websockets.clone() } else { self.ctx.carrier.clone() };
        let websocket_authorization = self.websocket_authorization(&to);
        let (routes, sip) = if carrier.name() == "sip" {
            match super::routing::routes(self, &to, &options).await {
                Ok(routes) => (routes, super::routing::call_options(&options, &to)),
                Err(no_route) => {
                    self.log(&format!("no route: {}", no_route.why));
                    self.end_unanswered("failed", Some(no_route.detail)).await?;
                    return Ok(None);
                }
            }
        } else {
            (Vec::new(), Default::default())
        };
        self.handle = Some(carrier.dial(DialRequest {
            leg_uuid: self.row.uuid,
            account_id: self.row.account_id,
            to,
            from: self.from.clone(),
            behaviour,
            routes,
            sip,
            inbound: false,
            websocket_authorization,
        }));
        let deadline = self.ctx.clock.deadline(Duration::from_secs(self.row.ringing_timer_s as u64));
        let mut rang = false;
        loop {
            let handle = self.handle.as_mut().expect("dialled");
            tokio::select! {
                event = handle.events.recv() => match event {
                    Some(Reported { event: CarrierEvent::Ringing, wall, .. }) if !rang => {
                        rang = true;
                        self.status_at("ringing", json!({}), wall).await?;
                    }
                    Some(Reported { event: CarrierEvent::Answered { by_machine }, wall, at }) => {
                        self.answered_wall = Some(at);
                        self.answered_at = Some(self.timestamp_at(wall));
                        return Ok(Some(by_machine));
                    }
                    Some(Reported { event: CarrierEvent::Log(line), wall, .. }) => self.log_at(&line, wall),
                    Some(Reported { event: CarrierEvent::Sip(facts), .. }) => self.pending_sip = Some(facts),
                    Some(Reported { event: CarrierEvent::Media(tap), .. }) => self.media = Some(tap),
                    Some(Reported { event: CarrierEvent::Ended(reason), wall, .. }) => {
                        let (status, detail) = match &reason {
                            EndReason::Busy => ("busy", None),
                            EndReason::Declined => ("rejected", Some("declined")),
                            EndReason::OutOfService => ("failed", Some("number_out_of_service")),
                            EndReason::Unavailable | EndReason::RemoteHangup | EndReason::Disconnected => ("unanswered", Some("unavailable")),
                            EndReason::Failed(detail) => ("failed", Some(detail.as_str())),
                        };
                        self.end_unanswered_at(status, detail, wall).await?;
                        return Ok(None);
                    }
                    Some(_) => {}
                    None => return Err(Stop::Internal("the carrier dropped the leg".into())),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    self.control(MediaCommand::Hangup);
                    self.end_unanswered("timeout", None).await?;
                    return Ok(None);
                }
                Some(wake) = recv_command(&mut self.commands) => match super::commands::apply_pending(self, wake).await {
                    Ok(()) => {}
                    Err(Stop::Hangup) => {
                        // Hung up by the API before answer: cancelled.
                        self.control(MediaCommand::Hangup);
                        self.end_unanswered("cancelled", None).await?;
                        return Ok(None);
                    }
                    Err(other) => return Err(other),
                },
            }
        }
    }

    /// The answered leg writes `answered`, stamped when the carrier reported the answer (set by
    /// `dial_and_ring`), then takes its credit. In that order: the answer is a fact whatever
    /// the account holds, and its webhook need not wait behind the account's other holds (at
    /// 500 calls/s of one account they added 115 ms at p99); a leg the credit does not cover
    /// ends at once all the same, costing nothing.
    pub async fn answer(&mut self) -> Step<()> {
        let answered_at = match self.answered_at {
            Some(t) => t,
            None => self.timestamp(),
        };
        self.answered_at = Some(answered_at);
        self.answered_wall.get_or_insert_with(Instant::now);
        let mut payload = self.payload_stamped("answered", answered_at);
        merge(&mut payload, json!({"start_time": null, "rate": null, "network": null}));
        let event = self.event("answered", payload);
        self.write(Change { status: Some("answered".into()), answered_at: Some(answered_at), events: vec![event], ..Default::default() }).await?;
        if !self.grant_credit().await? {
            // Spent since the call was created: it ends at once, costing nothing.
            self.credit_s = Some(0);
        }
        self.schedule_hangup();
        Ok(())
    }

    async fn after_answer(&mut self, by_machine: bool) -> Step<()> {
        match super::actions::detect_machine(self, by_machine).await {
            Ok(true) => return Err(Stop::Platform),
            Ok(false) => {}
            // Transferred while detection ran: the new NCCO is the call's.
            Err(Stop::Transfer(ncco)) => return super::actions::run_ncco(self, ncco).await,
            Err(other) => return Err(other),
        }
        let ncco = match self.row.ncco.clone() {
            Some(value) => {
                let mut problems = Problems::default();
                match crate::ncco::parse_ncco(&value, "ncco", &mut problems) {
                    Some(ncco) => ncco,
                    None => return self.ncco_error("stored NCCO no longer valid").await,
                }
            }
            None => match self.fetch_answer_ncco().await? {
                Some(ncco) => ncco,
                None => return Err(Stop::Platform),
            },
        };
        super::actions::run_ncco(self, ncco).await
    }

    async fn ncco_error(&mut self, reason: &str) -> Step<()> {
        let ts = self.timestamp();
        let payload = json!({"reason": reason, "conversation_uuid": self.row.conversation_uuid, "uuid": self.row.uuid, "timestamp": format_time(ts)});
        self.side_event("error", payload).await?;
        Err(Stop::Platform)
    }

    /// GET (query) or POST (JSON) the answer_url; fallback_url after two failures.
    async fn fetch_answer_ncco(&mut self) -> Step<Option<Ncco>> {
        let request = self.answer_request();
        let (reply, attempts) = request.send(&self.ctx.client).await;
        match self.answer_replied(request, reply, attempts, false).await? {
            Ok(ncco) => Ok(Some(ncco)),
            Err(_) => Err(Stop::Platform),
        }
    }

    /// What the answer_url is asked (Vonage's answer parameters), and where.
    fn answer_request(&self) -> AnswerRequest {
        let payload = json!({
            "to": self.to, "from": self.from, "uuid": self.row.uuid, "conversation_uuid": self.row.conversation_uuid,
            "region_url": self.ctx.base_url, "endpoint_type": self.row.to_endpoint.get("type").cloned().unwrap_or(Value::Null),
        });
        AnswerRequest {
            url: self.row.answer_url.clone().unwrap_or_default(),
            method: self.row.answer_method.clone(),
            fallback: self.row.fallback_url.clone(),
            payload,
            signer: self.signer(),
        }
    }

    /// Stores the answer request with its attempts; the NCCO, or (after an `error` event) the
    /// SIP status an inbound caller is refused with: 480 when the application could not be
    /// reached, 500 when it answered something that is not an NCCO.
    /// `inbound_answered`: the caller is being answered at once (an inbound leg).
    async fn answer_replied(
        &mut self,
        request: AnswerRequest,
        reply: Reply,
        attempts: Vec<answer::Attempt>,
        inbound_answered: bool,
    ) -> Step<Result<Ncco, u16>> {
        let mut event = self.event_to("answer", request.payload, Some(request.url), &request.method, "sent_inline");
        let error = attempts.last().and_then(|a| a.error.clone());
        event.attempts = attempts;
        if inbound_answered && matches!(reply, Reply::Ncco(_)) {
            // The caller is being answered: the record goes with the `answered` write, due as
            // soon as the ACK arrives, rather than costing a commit of its own.
            self.pending_log.push(event);
        } else {
            self.write(Change { events: vec![event], ..Default::default() }).await?;
        }
        let (reason, code) = match reply {
            Reply::Ncco(ncco) => return Ok(Ok(ncco)),
            Reply::Invalid(reason) => (format!("Syntax error in NCCO. Invalid value type or action. {reason}"), 500),
            Reply::Empty => ("The answer_url returned no NCCO".to_string(), 500),
            Reply::Unreachable => {
                let reason = error.unwrap_or_default();
                (format!("answer_url and fallback unreachable: {reason}"), 480)
            }
        };
        match self.ncco_error(&reason).await {
            Err(Stop::Platform) => Ok(Err(code)),
            Err(other) => Err(other),
            Ok(()) => Ok(Err(code)),
        }
    }

    /// The deck entry pricing this leg: the one in force when it was dialled (the claim looks it
    /// up for a batch of legs; a connect leg's is looked up at its first need).
    async fn rate(&mut self) -> Result<Option<billing::Rate>, sqlx::Error> {
        if self.rate.is_none() {
            // An inbound leg is priced by the number called (ours), at its inbound price.
            let rate = if self.row.direction == "inbound" {
                billing::inbound_rate(&self.ctx.pool, &self.to, Utc::now()).await?
            } else {
                billing::rate_for(&self.ctx.pool, &self.to, Utc::now()).await?
            };
            self.rate = Some(rate);
        }
        Ok(self.rate.clone().flatten())
    }

    /// Grants the leg more answered time and holds its price on the account, so calls running
    /// at the same time never spend the same credit. Steps of at least a minute (or what a tenth
    /// of the free credit pays for, when that is more: one step for a well-funded account), up to
    /// the length_timer and never beyond what the free credit covers. False when not even one
    /// more increment is covered.
    async fn grant_credit(&mut self) -> Step<bool> {
        const MIN_STEP_S: i64 = 60;
        /// A step is what a tenth of the usable credit pays for.
        const STEP_SHARE: i64 = 10;
        let internal = |e: sqlx::Error| Stop::Internal(e.to_string());
        let length_timer_s = self.row.length_timer_s as i64;
        let granted = self.credit_s.unwrap_or(0);
        let Some(rate) = self.rate().await.map_err(internal)? else {
            // Calls to this number are not rated: no limit.
            self.credit_s = None;
            return Ok(true);
        };
        let hold = |total, min_usable| billing::ledger::Hold {
            instance: self.ctx.instance_id,
            leg: self.row.uuid,
            account_id: self.row.account_id,
            total,
            min_usable,
        };
        // A first grant to an account whose free credit pays ten times the whole call: the
        // steps below would grant the whole length_timer at once. Taken without reading the
        // funds first (one round trip); when refused, the steps decide.
        let whole_call = rate.price(length_timer_s);
        if granted == 0 && self.reserved.is_zero() && !whole_call.is_zero() {
            let ample = whole_call * rust_decimal::Decimal::from(STEP_SHARE);
            if self.ctx.holds.take(hold(whole_call, ample)).await.map_err(internal)? {
                self.reserved = whole_call;
                self.credit_s = Some(length_timer_s);
                return Ok(true);
            }
        }
        // A few tries: another call of the account may take the credit between read and hold.
        for _ in 0..3 {
            let funds = billing::ledger::funds(&self.ctx.pool, self.row.account_id).await.map_err(internal)?;
            let Some(funds) = funds else { return Ok(false) };
            // What this leg could use in all: the free credit and what it already holds.
            let usable = funds.available() + self.reserved;
            let Some(max_s) = rate.affordable_seconds(usable) else {
                // Calls to this number are free: no limit.
                self.credit_s = None;
                return Ok(true);
            };
            let step = rate.affordable_seconds(usable / rust_decimal::Decimal::from(STEP_SHARE)).map_or(length_timer_s, |s| s.max(MIN_STEP_S));
            let target = (granted + step).min(length_timer_s).min(max_s);
            if target <= granted {
                return Ok(false);
            }
            let total = rate.price(target);
            if self.ctx.holds.reserve(hold(total, total)).await.map_err(internal)? {
                self.reserved = total;
                self.credit_s = Some(target);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The answered leg ends at its length_timer, or when its granted credit runs out.
    fn schedule_hangup(&mut self) {
        let Some(answered) = self.answered_wall else { return };
        let length_timer_s = self.row.length_timer_s as i64;
        self.ends_for_credit = self.credit_s.is_some_and(|s| s < length_timer_s);
        let limit_s = self.credit_s.map_or(length_timer_s, |s| s.min(length_timer_s));
        self.hangup_at = Some(answered + self.ctx.clock.wall(Duration::from_secs(limit_s.max(0) as u64)));
    }

    /// At the end of the granted credit: more is granted if the account still has free credit
    /// (or was topped up), and the call goes on (true); otherwise it ends.
    pub async fn credit_extended(&mut self) -> Step<bool> {
        if !self.ends_for_credit || self.answered_wall.is_none() || !self.grant_credit().await? {
            return Ok(false);
        }
        self.schedule_hangup();
        Ok(true)
    }

    /// Simulated seconds from answer to `end`.
    fn answered_seconds(&self, end: Instant) -> i64 {
        self.answered_wall.map_or(0, |t| self.ctx.clock.simulated(end.saturating_duration_since(t)).as_secs_f64().round() as i64)
    }

    /// The leg's final columns for `duration_s` answered seconds, priced by the deck. Unanswered
    /// legs are rated too (at 0): reports group them by country and network.
    async fn rated_finish(&mut self, end_time: DateTime<Utc>, duration_s: i64, disconnected_by: Option<&str>) -> Finish {
        let mut finish = Finish { end_time, duration_s: duration_s as i32, disconnected_by: disconnected_by.map(str::to_string), ..Finish::default() };
        match self.rate().await {
            Ok(Some(rate)) => {
                finish.billed_s = Some(billing::billed_seconds(duration_s, rate.initial_increment_s, rate.subsequent_increment_s) as i32);
                finish.price = Some(rate.price(duration_s));
                finish.rate = Some(rate.price_per_minute);
                finish.network = Some(rate.network);
                finish.country = rate.country;
            }
            Ok(None) => (finish.price, finish.billed_s) = (Some(rust_decimal::Decimal::ZERO), Some(0)),
            Err(e) => tracing::warn!(error = %e, "rating failed; the leg is left unpriced"),
        }
        finish
    }

    /// Closes a leg that another instance already ended (its columns are kept as they are).
    fn zero_finish(&self) -> Finish {
        Finish { end_time: Utc::now(), ..Finish::default() }
    }

    /// completed's payload and the leg's final columns, for a leg that ended at `end`.
    async fn completion(&mut self, end: DateTime<Utc>, duration_s: i64, disconnected_by: Option<&str>) -> (Value, Finish) {
        self.completion_with(end, duration_s, disconnected_by, None).await
    }

    async fn completion_with(&mut self, end: DateTime<Utc>, duration_s: i64, disconnected_by: Option<&str>, detail: Option<&str>) -> (Value, Finish) {
        let end = self.timestamp_at(end);
        let finish = self.rated_finish(end, duration_s, disconnected_by).await;
        let mut payload = self.payload_stamped("completed", end);
        merge(
            &mut payload,
            json!({
                "start_time": self.answered_at.map(format_time),
                "end_time": format_time(end),
                "duration": duration_s.to_string(),
                "rate": finish.rate.map(|r| format!("{r:.8}")),
                "price": finish.price.map(|p| format!("{p:.8}")),
                "network": finish.network,
                "disconnected_by": disconnected_by,
            }),
        );
        if let Some(detail) = detail {
            payload["detail"] = json!(detail);
        }
        (payload, finish)
    }

    /// A leg that never connected, now: its ending status, then `completed` (except `rejected`).
    pub async fn end_unanswered(&mut self, status: &str, detail: Option<&str>) -> Step<()> {
        self.end_unanswered_at(status, detail, Utc::now()).await
    }

    /// A leg that never connected, as the carrier reported at `moment`.
    pub async fn end_unanswered_at(&mut self, status: &str, detail: Option<&str>, moment: DateTime<Utc>) -> Step<()> {
        self.last_status = Some(status.to_string());
        self.last_detail = detail.map(str::to_string);
        let ts = self.timestamp_at(moment);
        let mut payload = self.payload_stamped(status, ts);
        if let Some(d) = detail {
            payload["detail"] = json!(d);
        }
        let mut events = vec![self.event(status, payload)];
        let (final_status, mut finish) = if status == "rejected" {
            let end = self.timestamp_at(moment);
            ("rejected", self.rated_finish(end, 0, None).await)
        } else {
            let (completed, finish) = self.completion(moment, 0, None).await;
            events.push(self.event("completed", completed));
            ("completed", finish)
        };
        finish.ending = Some(status.to_string());
        self.write(Change { status: Some(final_status.into()), detail: detail.map(str::to_string), events, finish: Some(finish), ..Default::default() }).await?;
        Ok(())
    }

    /// An answered leg ends: hang up, then `completed` with its duration and price. It ended
    /// when the callee hung up (the carrier's report), or now when we hang up.
    /// Ends the call on the network now (BYE) when the leg still has writing to do before its
    /// `completed` (a recording to encode): the call's end time is now, not when that is done.
    pub fn disconnect_now(&mut self) {
        self.control(MediaCommand::Hangup);
        if self.callee_hung_up.is_none() {
            self.callee_hung_up = Some((Utc::now(), Instant::now()));
        }
    }

    /// A websocket leg whose application closed it gets `disconnected` first, unless the leg
    /// already sent it (see `disconnected_payload`).
    pub async fn hang_up(&mut self, by: &str) -> Step<()> {
        self.control(MediaCommand::Hangup);
        let mut events: Vec<NewEvent> = self.disconnected_payload().map(|payload| self.event("disconnected", payload)).into_iter().collect();
        let (end, end_at) = self.callee_hung_up.take().unwrap_or_else(|| (Utc::now(), Instant::now()));
        let mut duration = if self.answered_wall.is_some() {
            self.answered_seconds(end_at)
        } else {
            // Taken over from a dead instance: measured from the answer time it recorded.
            self.answered_at.map_or(0, |t| (end - t).num_seconds().max(0))
        };
        // Never bill past what the credit covered (the hang-up lands a moment after its timer).
        if let Some(limit) = self.credit_s {
            duration = duration.min(limit);
        }
        let out_of_credit = self.ends_for_credit && self.hangup_at.is_some_and(|t| Instant::now() >= t);
        let detail = out_of_credit.then_some(INSUFFICIENT_CREDIT);
        let (payload, mut finish) = self.completion_with(end, duration, Some(by), detail).await;
        finish.ending = Some("completed".into());
        events.push(self.event("completed", payload));
        let change = Change { status: Some("completed".into()), detail: detail.map(str::to_string), events, finish: Some(finish), ..Default::default() };
        self.write(change).await?;
        Ok(())
    }

    /// After an internal error: end the leg so it is not left running.
    async fn end_after_failure(&mut self) -> Step<()> {
        if self.answered_at.is_some() {
            self.hang_up("platform").await
        } else {
            self.control(MediaCommand::Hangup);
            self.end_unanswered("failed", Some("internal_error")).await
        }
    }
}

/// An answer_url request, owned: it can run while the leg watches its caller.
pub struct AnswerRequest {
    url: String,
    method: String,
    fallback: Option<String>,
    payload: Value,
    signer: Option<Signer>,
}

impl AnswerRequest {
    pub async fn send(&self, client: &crate::webhooks::WebhookClient) -> (Reply, Vec<answer::Attempt>) {
        answer::fetch(
            client,
            Target { url: &self.url, method: &self.method },
            self.fallback.as_deref().map(|f| Target { url: f, method: "GET" }),
            &self.payload,
            "answer",
            self.signer.as_ref(),
        )
        .await
    }
}

/// The next wake-up from the API, or never when the leg has no command line.
pub async fn recv_command(commands: &mut Option<tokio::sync::mpsc::UnboundedReceiver<super::commands::Wake>>) -> Option<super::commands::Wake> {
    match commands {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

pub fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(t), Value::Object(e)) = (target, extra) {
        t.extend(e);
    }
}
