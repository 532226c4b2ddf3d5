mod common;
use common::receiver::Receiver;
use serde_json::json;

#[sqlx::test]
async fn smoke(pool: sqlx::PgPool) {
    let events = Receiver::start().await;
    let sipp = std::process::Command::new("sipp")
        .args(["-sf", "/tmp/sipsmoke/uas_answer_wait_bye.xml", "-i", "127.0.0.1", "-p", "5971", "-m", "1", "-nostdin", "-timeout", "30s", "-timeout_error", "-trace_msg", "-message_file", "/tmp/sipsmoke/msg.log"])
        .spawn()
        .unwrap();
    let options = common::Options {
        roles: vec!["api", "workers", "webhooks"],
        time_scale: 1.0,
        settings: |s| {
            s.carrier.kind = "sip".into();
            s.sip.listen = "127.0.0.1:0".into();
            s.sip.allow_private_uris = true;
        },
        ..Default::default()
    };
    let app = common::spawn_app_with(pool, options).await;
    sqlx::query("UPDATE applications SET event_url = $1").bind(events.url("/events")).execute(&app.pool).await.unwrap();
    let uuid = app
        .place(&json!({"to": [{"type": "sip", "uri": "sip:bob@127.0.0.1:5971"}], "from": {"type": "phone", "number": "447700900001"},
                        "ncco": [{"action": "talk", "text": "hello there"}]}))
        .await;
    events.wait_status("/events", &uuid, "completed").await;
    println!("{:?}", events.statuses("/events", &uuid));
    println!("{}", app.get_json(&format!("/v1/calls/{uuid}")).await);
    println!("{:?}", common::media_log(&app, &uuid).await);
    let out = sipp.wait_with_output().unwrap();
    println!("sipp exit {:?}", out.status.code());
    assert_eq!(out.status.code(), Some(0));
}
