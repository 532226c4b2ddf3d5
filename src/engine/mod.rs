//! The call engine: claims legs from PostgreSQL, drives each through the carrier and its NCCO,
//! and writes every state change with its events (the outbox) in one statement.

mod actions;
mod answer;
mod audio;
mod audio_tasks;
mod claim;
mod conversation_state;
mod inbound;
pub mod commands;
pub mod instance;
mod leg;
mod media;
mod relay;
mod routing;
mod store;
mod writer;

use crate::cache::Invalidations;
use crate::carrier::{Carrier, SimulatedNetwork};
use crate::clock::Clock;
use crate::config::Settings;
use crate::notify::{Notifier, EVENTS_CHANNEL, JOBS_CHANNEL};
use crate::webhooks::dispatcher::{Dispatcher, HandOff, HandOffs};
use crate::webhooks::WebhookClient;
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;


/// What every leg of this instance shares.
pub struct EngineCtx {
    pub pool: PgPool,
    /// Stores legs' writes, several to a statement.
    pub writer: writer::LegWriter,
    /// Takes legs' credit holds, several to a statement.
    pub holds: crate::billing::holds::CreditHolds,
    pub clock: Clock,
    pub carrier: Arc<dyn Carrier>,
    /// Legs to `websocket` endpoints: a WebSocket to the customer's server carries their audio.
    pub websockets: Arc<dyn Carrier>,
    /// Speech and audio files as samples, for legs with real audio (SIP, websocket).
    pub audio: audio::AudioLoader,
    /// Recognizes speech `input` on real audio (`media.speech_url`; None: not configured).
    pub speech: Option<Arc<dyn crate::speech::SpeechRecognizer>>,
    /// SIP trunks, for routing calls without a query each.
    pub trunks: crate::trunks::TrunkTable,
    pub client: WebhookClient,
    pub settings: Settings,
    pub instance_id: Uuid,
    /// Our own public base URL, for recording_url and region_url.
    pub base_url: String,
    pub live_legs: AtomicUsize,
    /// Conversations with legs on this instance: their audio.
    pub rooms: Arc<actions::Rooms>,
    /// …and where they stand (started, ended), shared with the cluster.
    pub conversations: conversation_state::Sessions,
    /// Carries conversation audio between instances (with a real network only).
    pub relay: Option<Arc<relay::RoomRelay>>,
    /// Where API commands for this instance's legs are delivered.
    pub commands: commands::CommandRouter,
    /// Wakes dispatchers in other instances (NOTIFY) and in this one (directly).
    pub notifier: Arc<Notifier>,
    pub events_wake: Arc<Notify>,
    /// This instance's dispatcher, when it runs one: legs hand it their new events directly.
    hand_offs: HandOffs,
}

impl EngineCtx {
    pub fn new(
        pool: PgPool,
        settings: Settings,
        base_url: String,
        hand_offs: HandOffs,
        carrier: Option<Arc<dyn Carrier>>,
        invalidations: &Invalidations,
    ) -> Arc<EngineCtx> {
        // A real network runs in real time: time_scale is the simulated network's.
        let clock = Clock::new(if carrier.is_some() { 1.0 } else { settings.carrier.time_scale });
        let pool_for_notifier = pool.clone();
        let instance_id = Uuid::new_v4();
        let rooms = Arc::new(actions::Rooms::default());
        let relay = carrier.as_ref().and_then(|carrier| start_relay(&settings, carrier.as_ref(), rooms.clone()));
        let carrier = carrier.unwrap_or_else(|| Arc::new(SimulatedNetwork::new(clock, settings.carrier.simulated.clone())));
        Arc::new(EngineCtx {
            client: WebhookClient::new(&settings.webhooks),
            // Its own connections, one per writer task: a leg's write never waits behind reads.
            writer: writer::LegWriter::spawn(
                crate::db::probing_pool(&pool, "outdial", settings.engine.write_tasks as u32),
                instance_id,
                settings.engine.write_tasks,
                settings.engine.write_batch_max,
            ),
            holds: crate::billing::holds::CreditHolds::spawn(
                pool.clone(),
                crate::db::probing_pool(&pool, "outdial", 1),
                settings.engine.write_batch_max,
            ),
            trunks: crate::trunks::TrunkTable::new(invalidations),
            audio: audio::AudioLoader::new(&settings, WebhookClient::new(&settings.webhooks)),
            speech: crate::speech::from_settings(&settings.media),
            websockets: Arc::new(crate::carrier::websocket::WebSocketCarrier::new(
                crate::webhooks::address_guard::AddressGuard::new(settings.webhooks.allow_private_addresses, settings.webhooks.allowed_networks.clone()),
                Duration::from_millis(settings.webhooks.connect_timeout_ms),
                crate::webhooks::tls::client_config(&settings.webhooks.ca_file),
            )),
            pool,
            clock,
            carrier,
            settings,
            instance_id,
            base_url,
            live_legs: AtomicUsize::new(0),
            rooms,
            conversations: conversation_state::Sessions::default(),
            relay,
            commands: commands::CommandRouter::default(),
            notifier: Notifier::spawn(pool_for_notifier),
            events_wake: Arc::new(Notify::new()),
            hand_offs,
        })
    }

    /// New events are pending: tell this instance's dispatcher at once, others by NOTIFY.
    pub fn wake_dispatchers(&self) {
        self.events_wake.notify_one();
        self.notifier.events();
    }

    /// How long a write should lock `pending` new events for this instance's dispatcher (None:
    /// no dispatcher here, or nothing to send).
    pub fn hand_off_lock_s(&self, pending: usize) -> Option<i64> {
        self.hand_offs.lock_s(self.settings.webhooks.event_timeout_ms, pending)
    }

    /// Gives freshly written, locked events to this instance's dispatcher; if it has stopped,
    /// unlocks them so any dispatcher can claim them.
    pub async fn hand_off(&self, chain: HandOff) {
        if let Err(chain) = self.hand_offs.send(chain) {
            let ids: Vec<i64> = chain.events.iter().map(|e| e.id).collect();
            if let Err(e) = crate::webhooks::dispatcher::unlock_events(&self.pool, &ids).await {
                tracing::warn!(error = %e, "could not unlock events after the dispatcher stopped; they go out when the lock expires");
            }
            self.wake_dispatchers();
        }
    }

    pub fn live_legs(&self) -> usize {
        self.live_legs.load(Ordering::Relaxed)
    }
}

/// The running engine: stop it with `shutdown`.
pub struct Engine {
    pub ctx: Arc<EngineCtx>,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Engine {
    /// Registers this instance and starts the roles configured (workers, webhooks).
    /// The dispatcher's caches are registered with `invalidations`.
    pub async fn start(ctx: Arc<EngineCtx>, invalidations: &Invalidations) -> Result<Engine, sqlx::Error> {
        let shutdown = CancellationToken::new();
        let engine_settings = &ctx.settings.engine;
        instance::register(&ctx.pool, ctx.instance_id, &engine_settings.roles.join(",")).await?;
        let jobs_wake = Arc::new(Notify::new());
        let events_wake = ctx.events_wake.clone();
        let mut tasks = vec![
            tokio::spawn(instance::heartbeat_and_reap(ctx.clone(), shutdown.clone())),
            tokio::spawn(listen(ctx.clone(), jobs_wake.clone(), events_wake.clone(), shutdown.clone())),
        ];
        let poll = Duration::from_millis(engine_settings.poll_ms);
        if engine_settings.has_role("workers") {
            tasks.push(tokio::spawn(claim::claim_loop(ctx.clone(), jobs_wake, poll, shutdown.clone())));
            let (watcher, pool, stop) = (ctx.clone(), ctx.pool.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move { watcher.conversations.watch(pool, stop).await }));
            if let Some(incoming) = ctx.carrier.take_incoming() {
                tasks.push(tokio::spawn(inbound::serve(ctx.clone(), incoming, shutdown.clone())));
            }
            if let Some(messages) = ctx.carrier.take_sip_messages() {
                let keep = Duration::from_secs(u64::from(ctx.settings.sip.record_messages_keep_h) * 3600);
                tasks.push(tokio::spawn(crate::calls::sip_messages::store(ctx.pool.clone(), messages, keep)));
            }
        }
        if engine_settings.has_role("webhooks") {
            // Events themselves are written by legs, durably; see dispatcher_pool for the rest.
            let pool = crate::db::dispatcher_pool(&ctx.pool, ctx.settings.webhooks.database_connections);
            let dispatcher = Dispatcher::new(pool, ctx.client.clone(), events_wake, invalidations);
            let (hand_off, hand_offs) = mpsc::unbounded_channel();
            ctx.hand_offs.connect(hand_off);
            tasks.push(tokio::spawn(dispatcher.run(hand_offs, poll, shutdown.clone())));
        }
        Ok(Engine { ctx, shutdown, tasks })
    }

    /// Graceful stop: no more claims; running legs get the drain deadline, then are released
    /// for another instance to finish.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.ctx.settings.engine.drain_timeout_ms);
        while self.ctx.live_legs() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for task in self.tasks {
            task.abort();
        }
        // Legs still up at the deadline are hung up on the network (BYE, CANCEL) before they
        // are released: no dialog stays up on a trunk while they wait for another instance.
        self.ctx.carrier.shutdown(Duration::from_secs(2)).await;
        if let Err(e) = instance::release(&self.ctx.pool, self.ctx.instance_id).await {
            tracing::warn!(error = %e, "could not release legs on shutdown");
        }
    }
}

/// LISTEN for new jobs, events and commands; wakes the claimer, the dispatcher or the leg.
/// Reconnects on error.
async fn listen(ctx: Arc<EngineCtx>, jobs: Arc<Notify>, events: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        let mut listener = match PgListener::connect_with(&ctx.pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; polling meanwhile");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if listener.listen_all([JOBS_CHANNEL, EVENTS_CHANNEL, commands::COMMANDS_CHANNEL, conversation_state::CHANNEL]).await.is_err() {
            continue;
        }
        // What changed while nobody listened is unknown.
        ctx.conversations.changed();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                message = listener.recv() => match message {
                    Ok(n) if n.channel() == JOBS_CHANNEL => jobs.notify_one(),
                    Ok(n) if n.channel() == conversation_state::CHANNEL => ctx.conversations.changed(),
                    Ok(n) if n.channel() == commands::COMMANDS_CHANNEL => {
                        if let Some((uuid, wake)) = commands::parse_notification(n.payload()) {
                            ctx.commands.deliver(uuid, wake);
                        }
                    }
                    Ok(_) => events.notify_one(),
                    Err(_) => break,
                }
            }
        }
    }
}

/// The conversation relay on the SIP listen address (advertised at the carrier's public one).
fn start_relay(settings: &Settings, carrier: &dyn Carrier, rooms: Arc<actions::Rooms>) -> Option<Arc<relay::RoomRelay>> {
    let bind = settings.sip.listen.parse::<std::net::SocketAddr>().map(|a| a.ip()).unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let advertised = carrier.signalling_address().map(|a| a.ip()).filter(|ip| !ip.is_unspecified()).unwrap_or(bind);
    match relay::RoomRelay::start(bind, advertised, rooms) {
        Ok(relay) => Some(relay),
        Err(e) => {
            tracing::error!(error = %e, "conversation relay not started: conversations stay on one instance");
            None
        }
    }
}
