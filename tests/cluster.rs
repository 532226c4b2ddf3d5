//! A cluster behind Kamailio (deploy/kamailio/kamailio.cfg): two `outdial serve` processes on
//! the SIP carrier over one database, Kamailio dispatching calls from trunks to them and
//! carrying their calls out, SIPp as the trunks. Proves that calls from a trunk are shared by
//! both instances; that `kill -9` of one mid-call leaves its calls to the other, which ends them
//! (BYE through Kamailio to the caller, events delivered) while Kamailio stops sending it new
//! calls once it fails its OPTIONS probe; and that a trunk's calls-per-second limit holds across
//! both instances (Kamailio's pipelimit answers 503 beyond it).
//!
//! Skipped with a line when Kamailio or SIPp is missing; fails then when CI is set.

mod common;

use common::kamailio::Kamailio;
use common::receiver::Receiver;
use common::sipp::Sipp;
use common::{Options, TestApp};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::process::Child;
use std::time::{Duration, Instant};

const NUMBER: &str = "442079460001";
/// Kamailio listens on another loopback address than the trunks (SIPp, 127.0.0.1), so that a
/// call admitted by its trunk's address proves Outdial read X-Outdial-Source.
const PROXY_IP: &str = "127.0.0.2";

struct Cluster {
    app: TestApp,
    events: Receiver,
    kamailio: Kamailio,
    /// SIP "ip:port" of each instance, and its process while it runs.
    instances: Vec<(String, Option<Child>)>,
}

fn free_udp_port(ip: &str) -> u16 {
    std::net::UdpSocket::bind((ip, 0)).unwrap().local_addr().unwrap().port()
}

/// One `outdial serve` (workers only) at 127.0.0.1:`port`, Kamailio as its outbound proxy and
/// trusted for calls from trunks, taking a dead instance's legs over after 1.5 s.
fn spawn_instance(pool: &PgPool, port: u16, kamailio: &str, rtp_min: u16) -> Child {
    let rtp_min_text = rtp_min.to_string();
    let rtp_max_text = (rtp_min + 499).to_string();
    common::sip_app::spawn_sip_worker(
        pool,
        port,
        &[
            ("OUTDIAL__SIP__OUTBOUND_PROXY", kamailio),
            ("OUTDIAL__SIP__TRUSTED_PROXIES", PROXY_IP),
            ("OUTDIAL__ENGINE__INSTANCE_TIMEOUT_MS", "1500"),
            ("OUTDIAL__SIP__RTP_PORT_MIN", &rtp_min_text),
            ("OUTDIAL__SIP__RTP_PORT_MAX", &rtp_max_text),
        ],
    )
}

impl Cluster {
    /// The API and webhook dispatcher in this process (no call workers), two instances running
    /// the calls, Kamailio in front, and the application's events going to a receiver.
    async fn start(pool: PgPool) -> Cluster {
        let events = Receiver::start().await;
        let options = Options { roles: vec!["api", "webhooks"], time_scale: 1.0, ..Options::default() };
        let app = common::spawn_app_with(pool.clone(), options).await;
        sqlx::query("UPDATE applications SET event_url = $1").bind(events.url("/events")).execute(&app.pool).await.unwrap();
        let ports = [free_udp_port("127.0.0.1"), free_udp_port("127.0.0.1")];
        let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let kamailio = Kamailio::start(PROXY_IP, free_udp_port(PROXY_IP), &addresses);
        let proxy = kamailio.address();
        let instances = ports
            .iter()
            .zip(addresses)
            .enumerate()
            .map(|(i, (port, address))| (address, Some(spawn_instance(&pool, *port, &proxy, 31000 + 500 * i as u16))))
            .collect();
        let cluster = Cluster { app, events, kamailio, instances };
        cluster.until_instances_up(2).await;
        for (address, _) in &cluster.instances {
            cluster.kamailio.wait_instance(address, 'A', Duration::from_secs(10)).await;
        }
        cluster
    }

    /// Waits until `n` worker instances beat in the database and answer Kamailio's probes.
    async fn until_instances_up(&self, n: i64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (up,): (i64,) = sqlx::query_as("SELECT count(*) FROM instances WHERE roles LIKE '%workers%' AND stopped_at IS NULL AND heartbeat_at > now() - interval '1 second'")
                .fetch_one(&self.app.pool)
                .await
                .unwrap();
            if up >= n {
                break;
            }
            assert!(Instant::now() < deadline, "{n} instances did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A probe each second: once one went by, a fresh instance is known to answer.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }

    fn pid(&self, i: usize) -> i32 {
        self.instances[i].1.as_ref().expect("instance running").id() as i32
    }

    /// SIPp calling NUMBER through Kamailio `calls` times at `rate` calls/s.
    fn callers(&self, calls: usize, rate: usize) -> Sipp {
        let (calls, rate) = (calls.to_string(), rate.to_string());
        let proxy = self.kamailio.address();
        Sipp::start("uac_via_proxy.xml", &[], &["-m", &calls, "-r", &rate, "-timeout", "90s", "-s", NUMBER, &proxy])
    }

    /// The inbound calls so far and the pid of the instance running each.
    async fn inbound_calls(&self) -> HashMap<String, i32> {
        let rows: Vec<(String, i32)> = sqlx::query_as(
            "SELECT c.uuid::text, i.pid FROM calls c JOIN call_jobs j ON j.call_uuid = c.uuid JOIN instances i ON i.id = j.locked_by WHERE c.direction = 'inbound'",
        )
        .fetch_all(&self.app.pool)
        .await
        .unwrap();
        rows.into_iter().collect()
    }

    /// Waits until `n` calls got `status` (each once) and returns their uuids.
    async fn reaching(&self, status: &str, n: usize) -> HashSet<String> {
        let got = self
            .events
            .wait_for("/events", |r| r.iter().filter(|e| e.body["status"] == status).map(|e| &e.body["uuid"]).collect::<HashSet<_>>().len() >= n)
            .await;
        got.iter().filter(|e| e.body["status"] == status).filter_map(|e| e.body["uuid"].as_str().map(str::to_string)).collect()
    }

    fn kill_instances(&mut self) {
        for (_, child) in &mut self.instances {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Stops the instances with SIGTERM (they close their database sessions: the test's
    /// database is dropped next), then the API.
    async fn stop(mut self) {
        for (_, child) in &mut self.instances {
            if let Some(child) = child.as_mut() {
                let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        self.kill_instances();
        if let Some(instance) = self.app.instance.take() {
            instance.stop().await;
        }
        self.app.pool.close().await;
    }
}

/// A failed test still stops its instances (they hold the test's database open).
impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_instances();
    }
}

/// NUMBER on the account's trunk at 127.0.0.1 (where SIPp calls from), linked to the
/// application, whose answer_url is the receiver's /answer.
async fn hold_number(cluster: &Cluster) {
    common::sip_app::hold_number(&cluster.app, NUMBER, "127.0.0.1", &["44"], &cluster.events.url("/answer")).await;
}

fn available() -> bool {
    Kamailio::available() && Sipp::available()
}

#[sqlx::test]
async fn calls_from_a_trunk_are_shared_and_a_killed_instances_calls_are_ended_by_the_other(pool: PgPool) {
    if !available() {
        return;
    }
    let mut cluster = Cluster::start(pool).await;
    hold_number(&cluster).await;
    // Calls that last until hung up.
    cluster.events.respond("/answer", 200, &json!([{"action": "talk", "text": "please hold the line", "loop": 0}]).to_string());

    // (a) Ten calls through Kamailio: both instances run some (round robin).
    let mut callers = cluster.callers(10, 10);
    let answered = cluster.reaching("answered", 10).await;
    let running = cluster.inbound_calls().await;
    assert_eq!(running.len(), 10, "{running:?}");
    let (first, second) = (cluster.pid(0), cluster.pid(1));
    let on_first: Vec<String> = running.iter().filter(|(_, pid)| **pid == first).map(|(uuid, _)| uuid.clone()).collect();
    let on_second: Vec<String> = running.iter().filter(|(_, pid)| **pid == second).map(|(uuid, _)| uuid.clone()).collect();
    assert!(on_first.len() >= 3 && on_second.len() >= 3, "calls shared by both instances: {} and {}", on_first.len(), on_second.len());
    assert!(answered.iter().all(|uuid| running.contains_key(uuid)));

    // (b) kill -9 of the first mid-call: the second takes its legs over and ends them (BYE
    // through Kamailio to SIPp, completed delivered); its own calls go on until hung up.
    let mut killed = cluster.instances[0].1.take().unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let taken_over = Instant::now();
    cluster.events.wait_for("/events", |r| on_first.iter().all(|uuid| r.iter().any(|e| e.body["uuid"] == uuid.as_str() && e.body["status"] == "completed"))).await;
    assert!(taken_over.elapsed() < Duration::from_secs(15));
    for uuid in &on_first {
        assert_eq!(cluster.events.statuses("/events", uuid), ["started", "ringing", "answered", "completed"], "call {uuid}");
        let call = cluster.app.get_json(&format!("/v1/calls/{uuid}")).await;
        assert_eq!(call["status"], "completed", "{call}");
    }
    for uuid in &on_second {
        assert!(!cluster.events.statuses("/events", uuid).contains(&"completed".to_string()), "the survivor's own calls go on");
        assert_eq!(cluster.app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await.status(), 204);
    }
    cluster.events.wait_for("/events", |r| on_second.iter().all(|uuid| r.iter().any(|e| e.body["uuid"] == uuid.as_str() && e.body["status"] == "completed"))).await;
    // Every call got its BYE (through Kamailio: SIPp sent and answered everything there).
    let (code, log) = callers.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");

    // The dead instance fails its OPTIONS probe: Kamailio sends it nothing more.
    let dead = cluster.instances[0].0.clone();
    cluster.kamailio.wait_instance(&dead, 'I', Duration::from_secs(10)).await;
    cluster.kamailio.wait_instance(&cluster.instances[1].0.clone(), 'A', Duration::from_secs(1)).await;
    let before: HashSet<String> = running.keys().cloned().collect();
    let started = Instant::now();
    let mut callers = cluster.callers(4, 10);
    cluster.reaching("answered", 14).await;
    // No INVITE waited for the dead instance to time out first.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    let now_running = cluster.inbound_calls().await;
    let new: Vec<(String, i32)> = now_running.into_iter().filter(|(uuid, _)| !before.contains(uuid)).collect();
    assert_eq!(new.iter().map(|(_, pid)| *pid).collect::<Vec<_>>(), vec![second; 4], "new calls run on the survivor only");
    for (uuid, _) in &new {
        assert_eq!(cluster.app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await.status(), 204);
    }
    let (code, log) = callers.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");
    cluster.stop().await;
}

#[sqlx::test]
async fn a_trunks_calls_per_second_hold_across_the_cluster(pool: PgPool) {
    if !available() {
        return;
    }
    const CPS: usize = 3;
    const CALLS: usize = 24;
    let cluster = Cluster::start(pool).await;
    let mut trunk = Sipp::start("uas_via_proxy.xml", &[], &["-m", "1000", "-timeout", "120s"]);
    sqlx::query("INSERT INTO trunks (id, account_id, name, host, port, cps) VALUES ($1, $2, 'limited', '127.0.0.1', $3, $4)")
        .bind(uuid::Uuid::new_v4())
        .bind(cluster.app.account.account_id)
        .bind(trunk.port() as i32)
        .bind(CPS as i32)
        .execute(&cluster.app.pool)
        .await
        .unwrap();
    // Eight calls a second for three seconds, dialled by whichever instance claims each: each
    // instance alone stays near its share, together they are well over the trunk's 3/s.
    let body = json!({"to": [{"type": "phone", "number": "447700900123"}], "from": {"type": "phone", "number": "447700900001"}, "ncco": [{"action": "talk", "text": "hi"}]});
    let placing = Instant::now();
    let mut uuids = Vec::new();
    for _ in 0..CALLS {
        uuids.push(cluster.app.place(&body).await);
        tokio::time::sleep(Duration::from_millis(1000 / 8)).await;
    }
    let span = placing.elapsed();
    cluster
        .events
        .wait_for("/events", |r| uuids.iter().all(|uuid| r.iter().any(|e| e.body["uuid"] == uuid.as_str() && e.body["status"] == "completed")))
        .await;
    let mut answered = 0;
    let mut refused = 0;
    for uuid in &uuids {
        let statuses = cluster.events.statuses("/events", uuid);
        let call: Value = cluster.app.get_json(&format!("/v1/calls/{uuid}")).await;
        if statuses.contains(&"answered".to_string()) {
            answered += 1;
        } else {
            assert_eq!(call["sip"]["final_code"], 503, "a call not answered was refused by Kamailio's limit: {call}");
            assert_eq!(call["status"], "failed", "{call}");
            let refusal = format!("calls/s: {}@", uuid.replace('-', ""));
            assert!(cluster.kamailio.log().contains(&refusal), "Kamailio's pipelimit refused {uuid}: {}", cluster.kamailio.log());
            refused += 1;
        }
    }
    eprintln!("{answered} answered, {refused} refused by Kamailio over {span:?} at a limit of {CPS}/s");
    // Both instances' INVITEs reached the trunk (their Via under Kamailio's).
    let (_, log) = trunk.wait(Duration::from_millis(1)).await;
    for (address, _) in &cluster.instances {
        assert!(log.contains(&format!("SIP/2.0/UDP {address};")), "no INVITE from instance {address} reached the trunk:\n{log}");
    }
    // The INVITEs reached Kamailio over about `span` (plus claim delays): at most CPS in each of
    // the one-second windows that covers.
    let windows = span.as_secs() as usize + 3;
    assert!(answered >= CPS && answered <= CPS * windows, "{answered} answered, {refused} refused over {span:?}");
    assert!(refused >= CALLS - CPS * windows, "{answered} answered, {refused} refused over {span:?}");
    cluster.stop().await;
}

#[sqlx::test]
async fn a_trunks_channels_hold_across_the_cluster_and_free_on_bye(pool: PgPool) {
    if !available() {
        return;
    }
    let cluster = Cluster::start(pool).await;
    let _trunk = Sipp::start("uas_via_proxy.xml", &[], &["-m", "1000", "-timeout", "120s"]);
    sqlx::query("INSERT INTO trunks (id, account_id, name, host, port, max_channels) VALUES ($1, $2, 'two-lines', '127.0.0.1', $3, 2)")
        .bind(uuid::Uuid::new_v4())
        .bind(cluster.app.account.account_id)
        .bind(_trunk.port() as i32)
        .execute(&cluster.app.pool)
        .await
        .unwrap();
    let body = json!({"to": [{"type": "phone", "number": "447700900123"}], "from": {"type": "phone", "number": "447700900001"}, "ncco": [{"action": "talk", "text": "please hold", "loop": 0}]});
    let first = cluster.app.place(&body).await;
    let second = cluster.app.place(&body).await;
    for uuid in [&first, &second] {
        cluster.events.wait_status("/events", uuid, "answered").await;
    }
    // A third while two are up: Kamailio's dialog profile says no, whichever instance dials.
    let third = cluster.app.place(&body).await;
    cluster.events.wait_status("/events", &third, "completed").await;
    let call = cluster.app.get_json(&format!("/v1/calls/{third}")).await;
    assert_eq!(call["status"], "failed", "{call}");
    assert_eq!(call["sip"]["final_code"], 503, "{call}");
    let refusal = format!("at 2 channels: {}@", third.replace('-', ""));
    assert!(cluster.kamailio.log().contains(&refusal), "Kamailio refused it: {}", cluster.kamailio.log());
    // Our BYE through Kamailio ends its dialog there: the line is free again.
    assert_eq!(cluster.app.put_json(&format!("/v1/calls/{first}"), &json!({"action": "hangup"})).await.status(), 204);
    cluster.events.wait_status("/events", &first, "completed").await;
    let fourth = cluster.app.place(&body).await;
    cluster.events.wait_status("/events", &fourth, "answered").await;
    for uuid in [&second, &fourth] {
        assert_eq!(cluster.app.put_json(&format!("/v1/calls/{uuid}"), &json!({"action": "hangup"})).await.status(), 204);
        cluster.events.wait_status("/events", uuid, "completed").await;
    }
    cluster.stop().await;
}

#[sqlx::test]
async fn an_invite_the_dead_instance_leaves_unanswered_goes_to_the_other(pool: PgPool) {
    if !available() {
        return;
    }
    let mut cluster = Cluster::start(pool).await;
    hold_number(&cluster).await;
    cluster.events.respond("/answer", 200, &json!([{"action": "talk", "text": "hello"}]).to_string());
    // Killed just before the calls: Kamailio still takes it for alive, and round robin gives it
    // one of the two INVITEs, which goes unanswered: after INVITE_TIMEOUT_MS, to the survivor.
    let mut killed = cluster.instances[0].1.take().unwrap();
    killed.kill().unwrap();
    killed.wait().unwrap();
    let mut callers = cluster.callers(2, 10);
    let (code, log) = callers.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "both calls answered (by the survivor): {log}");
    let dead = &cluster.instances[0].0;
    let kamailio_log = cluster.kamailio.log();
    assert!(kamailio_log.contains(&format!("instance sip:{dead} did not answer")), "{kamailio_log}");
    assert_eq!(cluster.reaching("completed", 2).await.len(), 2);
    cluster.stop().await;
}

#[sqlx::test]
async fn a_caller_cannot_name_a_trunks_address_itself(pool: PgPool) {
    if !available() {
        return;
    }
    let cluster = Cluster::start(pool).await;
    hold_number(&cluster).await;
    // The number's trunk is elsewhere now: SIPp at 127.0.0.1 is no trunk, whatever it claims.
    sqlx::query("UPDATE trunks SET host = '127.0.0.9'").execute(&cluster.app.pool).await.unwrap();
    let proxy = cluster.kamailio.address();
    // Through Kamailio: the caller's header is removed, Kamailio names 127.0.0.1.
    let mut through = Sipp::start("uac_forged_source.xml", &[], &["-s", NUMBER, &proxy]);
    let (code, log) = through.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "403 through Kamailio: {log}");
    // Straight to an instance: 127.0.0.1 is no trusted proxy, its header is not read.
    let instance = cluster.instances[1].0.clone();
    let mut direct = Sipp::start("uac_forged_source.xml", &[], &["-s", NUMBER, &instance]);
    let (code, log) = direct.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "403 from the instance: {log}");
    let (calls,): (i64,) = sqlx::query_as("SELECT count(*) FROM calls").fetch_one(&cluster.app.pool).await.unwrap();
    assert_eq!(calls, 0);
    // And the real trunk's address, named by Kamailio, is admitted (the same call from 127.0.0.1).
    sqlx::query("UPDATE trunks SET host = '127.0.0.1'").execute(&cluster.app.pool).await.unwrap();
    cluster.events.respond("/answer", 200, &json!([{"action": "talk", "text": "hello"}]).to_string());
    let mut caller = cluster.callers(1, 1);
    let (code, log) = caller.wait(Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{log}");
    cluster.stop().await;
}
