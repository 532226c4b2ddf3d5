//! GET /v1/calls and /v1/calls/{uuid}: HAL paging arithmetic and links, filters, isolation.

mod common;

use common::*;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::HashMap;

async fn create_n(app: &TestApp, n: usize) -> Vec<String> {
    let mut uuids = Vec::new();
    for _ in 0..n {
        uuids.push(app.create_call().await);
    }
    uuids
}

fn link_index(page: &Value, rel: &str) -> Option<i64> {
    let href = page["_links"][rel]["href"].as_str()?;
    let url = url::Url::parse(href).expect("links are absolute URLs");
    let pairs: HashMap<_, _> = url.query_pairs().into_owned().collect();
    Some(pairs["record_index"].parse().unwrap())
}

fn uuids_of(page: &Value) -> Vec<String> {
    page["_embedded"]["calls"].as_array().unwrap().iter().map(|c| c["uuid"].as_str().unwrap().to_string()).collect()
}

#[sqlx::test]
async fn an_empty_list_still_has_embedded_calls_and_links(pool: PgPool) {
    let app = spawn_app(pool).await;
    let page = app.get_json("/v1/calls").await;
    assert_eq!(page["count"], 0);
    assert_eq!(page["page_size"], 10);
    assert_eq!(page["record_index"], 0);
    assert_eq!(page["_embedded"]["calls"], serde_json::json!([]));
    assert_eq!(link_index(&page, "self"), Some(0));
    assert_eq!(link_index(&page, "first"), Some(0));
    assert_eq!(link_index(&page, "last"), Some(0));
    assert_eq!(link_index(&page, "next"), None);
    assert_eq!(link_index(&page, "prev"), None);
}

#[sqlx::test]
async fn pages_walk_every_call_once_with_an_exact_multiple(pool: PgPool) {
    let app = spawn_app(pool).await;
    let created = create_n(&app, 6).await;
    let mut seen = Vec::new();
    let mut path = "/v1/calls?page_size=3".to_string();
    let mut pages = 0;
    loop {
        let page = app.get_json(&path).await;
        assert_eq!(page["count"], 6);
        assert_eq!(link_index(&page, "last"), Some(3));
        seen.extend(uuids_of(&page));
        pages += 1;
        match page["_links"]["next"]["href"].as_str() {
            Some(href) => {
                let url = url::Url::parse(href).unwrap();
                path = format!("{}?{}", url.path(), url.query().unwrap());
            }
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(seen, created, "ascending creation order by default");
}

#[sqlx::test]
async fn the_last_partial_page_and_the_links_around_it(pool: PgPool) {
    let app = spawn_app(pool).await;
    let created = create_n(&app, 7).await;
    let page = app.get_json("/v1/calls?page_size=3&record_index=6").await;
    assert_eq!(uuids_of(&page), created[6..].to_vec());
    assert_eq!(page["record_index"], 6);
    assert_eq!(link_index(&page, "self"), Some(6));
    assert_eq!(link_index(&page, "prev"), Some(3));
    assert_eq!(link_index(&page, "last"), Some(6));
    assert_eq!(link_index(&page, "next"), None);

    let middle = app.get_json("/v1/calls?page_size=3&record_index=2").await;
    assert_eq!(uuids_of(&middle), created[2..5].to_vec());
    assert_eq!(link_index(&middle, "prev"), Some(0));
    assert_eq!(link_index(&middle, "next"), Some(5));

    let beyond = app.get_json("/v1/calls?page_size=3&record_index=50").await;
    assert_eq!(beyond["count"], 7);
    assert!(uuids_of(&beyond).is_empty());
    assert_eq!(link_index(&beyond, "next"), None);

    let desc = app.get_json("/v1/calls?page_size=2&order=desc").await;
    assert_eq!(uuids_of(&desc), vec![created[6].clone(), created[5].clone()]);
    assert!(desc["_links"]["next"]["href"].as_str().unwrap().contains("order=desc"), "links keep the filters");
}

#[sqlx::test]
async fn filters_by_status_conversation_and_dates(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let created = create_n(&app, 4).await;
    sqlx::query("UPDATE calls SET status = 'completed', created_at = '2024-01-01T00:00:00Z' WHERE uuid = $1::uuid")
        .bind(&created[0]).execute(&pool).await.unwrap();
    let completed = app.get_json("/v1/calls?status=completed").await;
    assert_eq!(uuids_of(&completed), vec![created[0].clone()]);
    assert_eq!(completed["count"], 1);

    let one = app.get_json(&format!("/v1/calls/{}", created[2])).await;
    let conversation = one["conversation_uuid"].as_str().unwrap();
    let by_conversation = app.get_json(&format!("/v1/calls?conversation_uuid={conversation}")).await;
    assert_eq!(uuids_of(&by_conversation), vec![created[2].clone()]);

    let old = app.get_json("/v1/calls?date_start=2023-12-31T00:00:00Z&date_end=2024-01-02T00:00:00Z").await;
    assert_eq!(uuids_of(&old), vec![created[0].clone()]);
    let recent = app.get_json("/v1/calls?date_start=2025-01-01T00:00:00Z").await;
    assert_eq!(recent["count"], 3);
    let unix = app.get_json("/v1/calls?date_end=1704153600").await;
    assert_eq!(uuids_of(&unix), vec![created[0].clone()], "unix seconds are tolerated");
}

#[sqlx::test]
async fn bad_filters_are_400_naming_the_parameter(pool: PgPool) {
    let app = spawn_app(pool).await;
    for (query, name) in [
        ("page_size=0", "page_size"),
        ("page_size=101", "page_size"),
        ("page_size=ten", "page_size"),
        ("record_index=-1", "record_index"),
        ("order=sideways", "order"),
        ("status=happy", "status"),
        ("date_start=yesterday", "date_start"),
        ("date_start=2024-02-01T00:00:00Z&date_end=2024-01-01T00:00:00Z", "date_end"),
    ] {
        let names = invalid_names(app.get(&format!("/v1/calls?{query}")).await).await;
        assert_eq!(names, vec![name.to_string()], "{query}");
    }
}

#[sqlx::test]
async fn one_call_has_the_fields_the_sdks_need(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let uuid = app.create_call().await;
    let call = app.get_json(&format!("/v1/calls/{uuid}")).await;
    assert_eq!(call["uuid"], uuid.as_str());
    assert_eq!(call["status"], "started");
    assert_eq!(call["direction"], "outbound");
    assert_eq!(call["to"], serde_json::json!({"type": "phone", "number": "447700900000"}));
    assert_eq!(call["from"], serde_json::json!({"type": "phone", "number": "447700900001"}));
    assert_eq!(call["_links"]["self"]["href"], format!("{}/v1/calls/{uuid}", app.address));
    assert!(call.get("price").is_none(), "no price before completion");

    sqlx::query("UPDATE calls SET status = 'completed', rate = 0.1, price = 0.00333333, duration_s = 2, network = '23420',
                 start_time = '2024-04-19T01:34:18Z', end_time = '2024-04-19T01:34:20Z' WHERE uuid = $1::uuid")
        .bind(&uuid).execute(&pool).await.unwrap();
    let done = app.get_json(&format!("/v1/calls/{uuid}")).await;
    assert_eq!(done["rate"], "0.10000000");
    assert_eq!(done["price"], "0.00333333");
    assert_eq!(done["duration"], "2");
    assert_eq!(done["network"], "23420");
    assert_eq!(done["start_time"], "2024-04-19T01:34:18.000Z");
    assert_eq!(done["end_time"], "2024-04-19T01:34:20.000Z");
}

#[sqlx::test]
async fn accounts_see_only_their_own_calls(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let mine = app.create_call().await;
    let other_account = outdial::accounts::repo::create(&pool, "other", 10).await.unwrap();
    let other_app = create_application(&pool, other_account.account_id, Some("http://127.0.0.1:9/e")).await;
    let other_jwt = app.jwt_for(other_app);

    let theirs = app.client.get(app.url(&format!("/v1/calls/{mine}"))).bearer_auth(&other_jwt).send().await.unwrap();
    assert_problem(theirs, 404).await;
    let list: Value = app.client.get(app.url("/v1/calls")).bearer_auth(&other_jwt).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["count"], 0);

    // A second application of the same account sees the account's calls, as on Vonage.
    let sibling = create_application(&pool, app.account.account_id, None).await;
    let seen = app.client.get(app.url(&format!("/v1/calls/{mine}"))).bearer_auth(app.jwt_for(sibling)).send().await.unwrap();
    assert_eq!(seen.status(), 200);
}

#[sqlx::test]
async fn unknown_and_malformed_call_ids_are_404(pool: PgPool) {
    let app = spawn_app(pool).await;
    let body = assert_problem(app.get(&format!("/v1/calls/{}", uuid::Uuid::new_v4())).await, 404).await;
    assert!(body["detail"].as_str().unwrap().contains("does not exist"));
    assert_problem(app.get("/v1/calls/not-a-uuid").await, 404).await;
}
