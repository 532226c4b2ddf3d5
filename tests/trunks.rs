//! SIP trunks through the API (and the CLI): who may see and change which, every bad field
//! named, passwords sealed and never shown, and the routing lookup's order.

mod common;

use common::*;
use outdial::trunks::CredentialKey;
use serde_json::{json, Value};
use sqlx::PgPool;

const KEY_HEX: &str = "4f1c2a9e8b7d6c5f4e3d2c1b0a99887766554433221100ffeeddccbbaa998877";

fn with_key(settings: &mut outdial::config::Settings) {
    settings.sip.credentials_key = Some(CredentialKey::parse(KEY_HEX).unwrap());
}

async fn spawn_keyed(pool: PgPool) -> TestApp {
    spawn_app_with(pool, Options { settings: with_key, ..Options::default() }).await
}

type Creds = (String, String);

fn own(app: &TestApp) -> Creds {
    (app.account.api_key.clone(), app.account.api_secret.clone())
}

async fn admin(app: &TestApp) -> Creds {
    let admin = outdial::accounts::repo::create(&app.pool, "operator", 10).await.unwrap();
    sqlx::query("UPDATE accounts SET rates_admin = true WHERE id = $1").bind(admin.account_id).execute(&app.pool).await.unwrap();
    (admin.api_key, admin.api_secret)
}

async fn other(app: &TestApp) -> Creds {
    let other = outdial::accounts::repo::create(&app.pool, "other", 10).await.unwrap();
    (other.api_key, other.api_secret)
}

async fn send(app: &TestApp, creds: &Creds, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path)).basic_auth(&creds.0, Some(&creds.1));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn create(app: &TestApp, creds: &Creds, body: Value) -> Value {
    let response = send(app, creds, reqwest::Method::POST, "/v1/trunks", Some(body.clone())).await;
    assert_eq!(response.status(), 201, "{body}: {:?}", response.text().await);
    response.json().await.unwrap()
}

async fn lookup(app: &TestApp, creds: &Creds, body: Value) -> Value {
    let response = send(app, creds, reqwest::Method::POST, "/v1/routing/lookup", Some(body.clone())).await;
    assert_eq!(response.status(), 200, "{body}: {:?}", response.text().await);
    response.json().await.unwrap()
}

fn names(found: &Value) -> Vec<String> {
    found["trunks"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

#[sqlx::test]
async fn an_account_creates_lists_reads_updates_and_deletes_its_trunks(pool: PgPool) {
    let app = spawn_keyed(pool).await;
    let me = own(&app);
    let created = create(
        &app,
        &me,
        json!({"name": "byoc-1", "host": "sip.example.com", "transport": "tcp", "username": "acme", "password": "hunter2-secret",
               "from_domain": "acme.example", "prefixes": ["+44", "1"], "priority": 5, "cps": 10, "max_channels": 30}),
    )
    .await;
    assert_eq!(created["owner"], "account");
    assert_eq!(created["port"], 5060, "the default port");
    assert_eq!(created["transport"], "tcp");
    assert_eq!(created["prefixes"], json!(["44", "1"]), "the + is dropped");
    assert_eq!(created["has_password"], true);
    assert_eq!(created["enabled"], true);
    assert!(created.get("password").is_none() && created.get("password_encrypted").is_none(), "{created}");
    assert!(!created.to_string().contains("hunter2"), "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    // Stored sealed: the column holds no plaintext, and it opens with the key for this trunk.
    let (sealed,): (Vec<u8>,) = sqlx::query_as("SELECT password_encrypted FROM trunks WHERE id = $1::uuid").bind(&id).fetch_one(&app.pool).await.unwrap();
    assert!(!sealed.windows(7).any(|w| w == b"hunter2"), "no plaintext at rest");
    let key = CredentialKey::parse(KEY_HEX).unwrap();
    assert_eq!(key.open(id.parse().unwrap(), &sealed).unwrap(), "hunter2-secret");

    let minimal = create(&app, &me, json!({"name": "byoc-2", "host": "10.0.0.7"})).await;
    assert_eq!((minimal["priority"].as_i64(), minimal["transport"].as_str(), minimal["has_password"].as_bool()), (Some(10), Some("udp"), Some(false)));
    assert_eq!(minimal["prefixes"], json!([]));
    assert_eq!(minimal["cps"], Value::Null);

    let listed: Value = send(&app, &me, reqwest::Method::GET, "/v1/trunks", None).await.json().await.unwrap();
    let listed_names: Vec<&str> = listed["trunks"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(listed_names, ["byoc-1", "byoc-2"]);
    assert!(!listed.to_string().contains("hunter2"));

    let got: Value = send(&app, &me, reqwest::Method::GET, &format!("/v1/trunks/{id}"), None).await.json().await.unwrap();
    assert_eq!(got["name"], "byoc-1");
    assert_eq!(got["has_password"], true);

    // A PUT changes the fields it names; null removes optional ones.
    let response = send(&app, &me, reqwest::Method::PUT, &format!("/v1/trunks/{id}"), Some(json!({"port": 5080, "enabled": false, "cps": null, "password": null}))).await;
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!((updated["port"].as_i64(), updated["enabled"].as_bool(), updated["has_password"].as_bool()), (Some(5080), Some(false), Some(false)));
    assert_eq!(updated["cps"], Value::Null);
    assert_eq!((updated["host"].as_str(), updated["max_channels"].as_i64(), updated["username"].as_str()), (Some("sip.example.com"), Some(30), Some("acme")));
    let (sealed,): (Option<Vec<u8>>,) = sqlx::query_as("SELECT password_encrypted FROM trunks WHERE id = $1::uuid").bind(&id).fetch_one(&app.pool).await.unwrap();
    assert!(sealed.is_none());

    // Another account sees none of it.
    let stranger = other(&app).await;
    let theirs: Value = send(&app, &stranger, reqwest::Method::GET, "/v1/trunks", None).await.json().await.unwrap();
    assert_eq!(theirs["trunks"], json!([]));
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        assert_problem(send(&app, &stranger, method, &format!("/v1/trunks/{id}"), None).await, 404).await;
    }
    assert_problem(send(&app, &stranger, reqwest::Method::PUT, &format!("/v1/trunks/{id}"), Some(json!({"port": 1}))).await, 404).await;

    let deleted = send(&app, &me, reqwest::Method::DELETE, &format!("/v1/trunks/{id}"), None).await;
    assert_eq!(deleted.status(), 204);
    assert_problem(send(&app, &me, reqwest::Method::GET, &format!("/v1/trunks/{id}"), None).await, 404).await;
    assert_problem(send(&app, &me, reqwest::Method::GET, "/v1/trunks/not-a-uuid", None).await, 404).await;
    assert_problem(app.client.get(app.url("/v1/trunks")).send().await.unwrap(), 401).await;
    app.stop().await;
}

#[sqlx::test]
async fn every_bad_field_is_named_and_duplicate_names_conflict(pool: PgPool) {
    let app = spawn_keyed(pool).await;
    let me = own(&app);
    let post = |body: Value| send(&app, &me, reqwest::Method::POST, "/v1/trunks", Some(body));
    for (body, expected) in [
        (json!({}), vec!["name", "host"]),
        (
            json!({"name": "", "host": "sip.example.com:5060", "port": 70000, "transport": "tls", "prefixes": ["44", "4x", 7],
                   "priority": -1, "cps": -3, "max_channels": -1}),
            vec!["prefixes[2]", "name", "host", "port", "transport", "prefixes[1]", "priority", "cps", "max_channels"],
        ),
        (json!({"name": "t", "host": "h.example", "password": "pw"}), vec!["password"]),
        (json!({"name": "t", "host": "h.example", "port": 0, "enabled": "maybe", "prefixes": "44"}), vec!["prefixes", "enabled", "port"]),
        (json!({"name": "has space", "host": "-bad-.example"}), vec!["name", "host"]),
    ] {
        let mut got = invalid_names(post(body.clone()).await).await;
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{body}");
    }
    assert_eq!(count(&app).await, 0, "nothing stored");

    let first = create(&app, &me, json!({"name": "dup", "host": "a.example"})).await;
    let conflict = assert_problem(post(json!({"name": "dup", "host": "b.example"})).await, 409).await;
    assert!(conflict["detail"].as_str().unwrap().contains("dup"), "{conflict}");
    // The same name under another owner is fine.
    create(&app, &other(&app).await, json!({"name": "dup", "host": "c.example"})).await;
    create(&app, &admin(&app).await, json!({"name": "dup", "host": "d.example", "platform": true})).await;

    // An update is checked the same way, merged over what is stored.
    let id = first["id"].as_str().unwrap();
    let second = create(&app, &me, json!({"name": "other-name", "host": "a.example", "username": "u", "password": "p"})).await;
    let put = |id: String, body: Value| {
        let (app, me) = (&app, &me);
        async move { send(app, me, reqwest::Method::PUT, &format!("/v1/trunks/{id}"), Some(body)).await }
    };
    assert_eq!(invalid_names(put(id.to_string(), json!({"port": -1, "transport": "sctp"})).await).await, ["port", "transport"]);
    assert_eq!(invalid_names(put(id.to_string(), json!({"password": "p"})).await).await, ["password"], "no username on this trunk");
    let sid = second["id"].as_str().unwrap().to_string();
    assert_eq!(invalid_names(put(sid.clone(), json!({"username": null})).await).await, ["username"], "its password needs one");
    assert_problem(put(sid, json!({"name": "dup"})).await, 409).await;
    app.stop().await;
}

async fn count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM trunks").fetch_one(&app.pool).await.unwrap()
}

#[sqlx::test]
async fn without_a_credentials_key_passwords_are_refused_and_the_rest_works(pool: PgPool) {
    let app = spawn_app(pool).await;
    let me = own(&app);
    let response = send(&app, &me, reqwest::Method::POST, "/v1/trunks", Some(json!({"name": "t", "host": "h.example", "username": "u", "password": "p"}))).await;
    let problem = assert_problem(response, 422).await;
    assert!(problem["detail"].as_str().unwrap().contains("set sip.credentials_key (OUTDIAL__SIP__CREDENTIALS_KEY) to store trunk passwords"), "{problem}");
    assert_eq!(count(&app).await, 0);
    let plain = create(&app, &me, json!({"name": "t", "host": "h.example", "username": "u"})).await;
    assert_eq!(plain["has_password"], false);
    let id = plain["id"].as_str().unwrap();
    assert_problem(send(&app, &me, reqwest::Method::PUT, &format!("/v1/trunks/{id}"), Some(json!({"password": "p"}))).await, 422).await;
    app.stop().await;
}

#[sqlx::test]
async fn platform_trunks_are_for_admins_only(pool: PgPool) {
    let app = spawn_keyed(pool).await;
    let me = own(&app);
    let operator = admin(&app).await;
    let refused = send(&app, &me, reqwest::Method::POST, "/v1/trunks", Some(json!({"name": "carrier", "host": "sip.carrier.example", "platform": true}))).await;
    let problem = assert_problem(refused, 403).await;
    assert!(problem["detail"].as_str().unwrap().contains("--rates-admin"), "{problem}");

    let platform = create(&app, &operator, json!({"name": "carrier", "host": "sip.carrier.example", "platform": true})).await;
    assert_eq!(platform["owner"], "platform");
    assert_eq!(platform["account_id"], Value::Null);
    let own_trunk = create(&app, &operator, json!({"name": "mine", "host": "pbx.example"})).await;
    assert_eq!(own_trunk["owner"], "account");

    let id = platform["id"].as_str().unwrap();
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        assert_problem(send(&app, &me, method, &format!("/v1/trunks/{id}"), None).await, 403).await;
    }
    assert_problem(send(&app, &me, reqwest::Method::PUT, &format!("/v1/trunks/{id}"), Some(json!({"priority": 1}))).await, 403).await;
    let mine: Value = send(&app, &me, reqwest::Method::GET, "/v1/trunks", None).await.json().await.unwrap();
    assert_eq!(mine["trunks"], json!([]), "a customer's list holds only its own");

    let both: Value = send(&app, &operator, reqwest::Method::GET, "/v1/trunks", None).await.json().await.unwrap();
    let owners: Vec<(&str, &str)> = both["trunks"].as_array().unwrap().iter().map(|t| (t["name"].as_str().unwrap(), t["owner"].as_str().unwrap())).collect();
    assert_eq!(owners, [("mine", "account"), ("carrier", "platform")]);
    let response = send(&app, &operator, reqwest::Method::PUT, &format!("/v1/trunks/{id}"), Some(json!({"priority": 1}))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(send(&app, &operator, reqwest::Method::DELETE, &format!("/v1/trunks/{id}"), None).await.status(), 204);
    app.stop().await;
}

#[sqlx::test]
async fn routing_lookup_orders_trunks_as_calls_would_try_them(pool: PgPool) {
    let app = spawn_keyed(pool).await;
    let me = own(&app);
    let operator = admin(&app).await;
    let platform = |name: &str, prefixes: Value, priority: i64| json!({"name": name, "host": format!("{name}.example"), "prefixes": prefixes, "priority": priority, "platform": true});
    create(&app, &operator, platform("world", json!([]), 10)).await;
    create(&app, &operator, platform("uk", json!(["44"]), 10)).await;
    create(&app, &operator, platform("uk-mobile-b", json!(["447", "33"]), 20)).await;
    create(&app, &operator, platform("uk-mobile-a", json!(["447"]), 20)).await;
    create(&app, &operator, platform("uk-mobile-cheap", json!(["447"]), 5)).await;
    let off = create(&app, &operator, platform("uk-mobile-off", json!(["4477"]), 1)).await;
    send(&app, &operator, reqwest::Method::PUT, &format!("/v1/trunks/{}", off["id"].as_str().unwrap()), Some(json!({"enabled": false}))).await;

    // Longest prefix (447 beats 44 and the catch-all; the disabled 4477 is skipped), then
    // priority, then name.
    let found = lookup(&app, &me, json!({"to": "+447700900123"})).await;
    assert_eq!(found["number"], "447700900123");
    assert_eq!(names(&found), ["uk-mobile-cheap", "uk-mobile-a", "uk-mobile-b"]);
    let first = &found["trunks"][0];
    assert_eq!((first["owner"].as_str(), first["prefix_matched"].as_str(), first["priority"].as_i64()), (Some("platform"), Some("447"), Some(5)));
    assert_eq!((first["host"].as_str(), first["port"].as_i64(), first["transport"].as_str()), (Some("uk-mobile-cheap.example"), Some(5060), Some("udp")));
    assert!(first["id"].is_string());
    assert_eq!(names(&lookup(&app, &me, json!({"to": "442079460000"})).await), ["uk"]);
    let anywhere = lookup(&app, &me, json!({"to": "12025550100"})).await;
    assert_eq!(names(&anywhere), ["world"]);
    assert_eq!(anywhere["trunks"][0]["prefix_matched"], "");
    // The JWT and dialed_number work as before, now with trunks too.
    let response = app.client.post(app.url("/v1/routing/lookup")).bearer_auth(app.jwt()).json(&json!({"dialed_number": "33123456789"})).send().await.unwrap();
    let by_jwt: Value = response.json().await.unwrap();
    assert_eq!(names(&by_jwt), ["uk-mobile-b"]);

    // The account's own trunks take precedence when one serves the number, whatever the prefix length.
    create(&app, &me, json!({"name": "my-pbx", "host": "pbx.example", "prefixes": ["4"], "priority": 50})).await;
    create(&app, &me, json!({"name": "my-backup", "host": "backup.example", "prefixes": ["4"], "priority": 60})).await;
    let mine = create(&app, &me, json!({"name": "my-off", "host": "off.example", "prefixes": ["44"], "enabled": false})).await;
    let found = lookup(&app, &me, json!({"to": "447700900123"})).await;
    assert_eq!(names(&found), ["my-pbx", "my-backup"]);
    assert_eq!((found["trunks"][0]["owner"].as_str(), found["trunks"][0]["prefix_matched"].as_str()), (Some("account"), Some("4")));
    assert_eq!(names(&lookup(&app, &me, json!({"to": "12025550100"})).await), ["world"], "none of its own serves it");
    assert_eq!(names(&lookup(&app, &other(&app).await, json!({"to": "447700900123"})).await), ["uk-mobile-cheap", "uk-mobile-a", "uk-mobile-b"]);

    // A forced trunk: that one alone, its own first, then the platform's; prefixes do not matter.
    let forced = lookup(&app, &me, json!({"to": "12025550100", "trunk": "uk"})).await;
    assert_eq!(names(&forced), ["uk"]);
    assert_eq!(forced["trunks"][0]["prefix_matched"], Value::Null);
    create(&app, &me, json!({"name": "uk", "host": "my-uk.example", "prefixes": ["99"]})).await;
    let forced = lookup(&app, &me, json!({"to": "447700900123", "trunk": "uk"})).await;
    assert_eq!((forced["trunks"][0]["owner"].as_str(), forced["trunks"][0]["host"].as_str()), (Some("account"), Some("my-uk.example")));
    for trunk in ["nope", "my-off", "uk-mobile-off"] {
        let response = send(&app, &me, reqwest::Method::POST, "/v1/routing/lookup", Some(json!({"to": "447700900123", "trunk": trunk}))).await;
        assert_eq!(invalid_names(response).await, ["trunk"], "{trunk}");
    }
    let _ = mine;

    // No trunk at all for the number: an empty list. The number must be E.164.
    sqlx::query("DELETE FROM trunks").execute(&app.pool).await.unwrap();
    assert_eq!(lookup(&app, &me, json!({"to": "447700900123"})).await["trunks"], json!([]));
    let bad = send(&app, &me, reqwest::Method::POST, "/v1/routing/lookup", Some(json!({"to": "12"}))).await;
    assert_eq!(invalid_names(bad).await, ["to"]);
    app.stop().await;
}

#[sqlx::test]
async fn routes_for_hands_the_engine_opened_passwords(pool: PgPool) {
    let app = spawn_keyed(pool).await;
    let me = own(&app);
    create(&app, &me, json!({"name": "auth", "host": "sip.example.com", "port": 5070, "transport": "tcp", "username": "acme", "password": "hunter2-secret",
                              "from_domain": "acme.example", "prefixes": ["44"], "cps": 5, "max_channels": 9})).await;
    let key = CredentialKey::parse(KEY_HEX).unwrap();
    let account = app.account.account_id;
    let routes = outdial::trunks::routes_for(&app.pool, Some(&key), account, "+447700900123", None).await.unwrap();
    assert_eq!(routes.len(), 1);
    let route = &routes[0];
    assert_eq!((route.name.as_str(), route.host.as_str(), route.port, route.transport), ("auth", "sip.example.com", 5070, outdial::carrier::SipTransport::Tcp));
    assert_eq!((route.username.as_deref(), route.password.as_deref(), route.from_domain.as_deref()), (Some("acme"), Some("hunter2-secret"), Some("acme.example")));
    assert_eq!((route.cps, route.max_channels), (Some(5), Some(9)));
    assert!(!format!("{route:?}").contains("hunter2"), "Debug redacts the password");
    assert!(outdial::trunks::routes_for(&app.pool, Some(&key), account, "12025550100", None).await.unwrap().is_empty(), "no route");

    use outdial::trunks::RoutingError;
    let wrong = CredentialKey::from_bytes([1; 32]);
    assert!(matches!(outdial::trunks::routes_for(&app.pool, Some(&wrong), account, "447700900123", None).await, Err(RoutingError::Undecryptable(n)) if n == "auth"));
    assert!(matches!(outdial::trunks::routes_for(&app.pool, None, account, "447700900123", None).await, Err(RoutingError::NoKey(_))));
    assert!(matches!(outdial::trunks::routes_for(&app.pool, Some(&key), account, "447700900123", Some("nope")).await, Err(RoutingError::UnknownTrunk(_))));
    app.stop().await;
}
