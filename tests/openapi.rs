//! The OpenAPI document (src/http/openapi.json, served at GET /v1/openapi.json) checked against
//! the running server: every documented operation is routed and every route the server registers
//! (read from `http::routes` in src/http/mod.rs) is documented, its security matches what the
//! server enforces, every status the server answers is documented, and the bodies it sends fit
//! the documented schemas (checked with a small JSON Schema subset below, enough for this
//! document: $ref, type, const, enum, required, properties, additionalProperties, items, oneOf,
//! anyOf, bounds, pattern).

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::BTreeSet;
use uuid::Uuid;

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

fn document() -> Value {
    serde_json::from_str(outdial::http::OPENAPI).expect("openapi.json is valid JSON")
}

/// Follows a local `$ref` (`#/components/...`).
fn pointer<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let path = reference.strip_prefix('#').unwrap_or_else(|| panic!("only local $refs are used, got {reference}"));
    doc.pointer(path).unwrap_or_else(|| panic!("$ref {reference} points at nothing"))
}

/// A Response or Parameter object with its `$ref` (if any) followed.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => resolve(doc, pointer(doc, r)),
        None => value,
    }
}

struct Operation<'a> {
    path: &'a str,
    method: Method,
    op: &'a Value,
}

impl Operation<'_> {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// The security scheme the operation requires, or None for an open one.
    fn scheme(&self, doc: &Value) -> Option<String> {
        let security = self.op.get("security").or_else(|| doc.get("security"))?;
        let first = security.as_array().expect("security is an array").first()?;
        Some(first.as_object().expect("security requirement").keys().next().expect("a scheme name").clone())
    }

    fn has_body(&self) -> bool {
        self.op.get("requestBody").is_some()
    }

    fn concrete_path(&self) -> String {
        concrete_path(self.path)
    }
}

/// The path with each `{param}` replaced by a random UUID.
fn concrete_path(template: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("closed path template") + start;
        out.push_str(&rest[..start]);
        out.push_str(&Uuid::new_v4().to_string());
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn operations(doc: &Value) -> Vec<Operation<'_>> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                ops.push(Operation { path, method: method.to_uppercase().parse().unwrap(), op });
            }
        }
    }
    ops
}

// ---- A JSON Schema subset --------------------------------------------------------------------

fn type_matches(t: &str, v: &Value) -> bool {
    match t {
        "null" => v.is_null(),
        "boolean" => v.is_boolean(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "object" => v.is_object(),
        "array" => v.is_array(),
        other => panic!("unknown JSON Schema type {other}"),
    }
}

/// Checks `value` against `schema`, pushing one message per violation.
fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        assert!(schema.as_bool().is_some(), "schema at {at} is neither object nor boolean");
        return;
    };
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        check_schema(doc, pointer(doc, r), value, at, errors);
    }
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(t) => type_matches(t, value),
            Value::Array(ts) => ts.iter().any(|t| type_matches(t.as_str().unwrap(), value)),
            _ => panic!("bad type keyword at {at}"),
        };
        if !ok {
            errors.push(format!("{at}: {value} is not of type {t}"));
            return;
        }
    }
    if let Some(c) = s.get("const") {
        if c != value {
            errors.push(format!("{at}: {value} is not {c}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(value) {
            errors.push(format!("{at}: {value} is not one of {}", Value::Array(e.clone())));
        }
    }
    if let Some(n) = value.as_f64() {
        if s.get("minimum").and_then(Value::as_f64).is_some_and(|m| n < m) || s.get("maximum").and_then(Value::as_f64).is_some_and(|m| n > m) {
            errors.push(format!("{at}: {n} is out of range"));
        }
    }
    if let Some(text) = value.as_str() {
        let chars = text.chars().count() as u64;
        if s.get("minLength").and_then(Value::as_u64).is_some_and(|m| chars < m) || s.get("maxLength").and_then(Value::as_u64).is_some_and(|m| chars > m) {
            errors.push(format!("{at}: {value} has the wrong length"));
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str) {
            if !regex::Regex::new(p).unwrap_or_else(|e| panic!("pattern {p} at {at}: {e}")).is_match(text) {
                errors.push(format!("{at}: {value} does not match {p}"));
            }
        }
    }
    if let Some(map) = value.as_object() {
        for key in s.get("required").and_then(Value::as_array).into_iter().flatten() {
            if !map.contains_key(key.as_str().unwrap()) {
                errors.push(format!("{at}: required {key} is missing"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (key, sub) in props.into_iter().flatten() {
            if let Some(v) = map.get(key) {
                check_schema(doc, sub, v, &format!("{at}.{key}"), errors);
            }
        }
        if let Some(extra) = s.get("additionalProperties") {
            for (key, v) in map.iter().filter(|(k, _)| !props.is_some_and(|p| p.contains_key(*k))) {
                match extra {
                    Value::Bool(false) => errors.push(format!("{at}: {key} is not an allowed property")),
                    Value::Bool(true) => {}
                    sub => check_schema(doc, sub, v, &format!("{at}.{key}"), errors),
                }
            }
        }
    }
    if let Some(items) = value.as_array() {
        let len = items.len() as u64;
        if s.get("minItems").and_then(Value::as_u64).is_some_and(|m| len < m) || s.get("maxItems").and_then(Value::as_u64).is_some_and(|m| len > m) {
            errors.push(format!("{at}: {len} items is out of range"));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                check_schema(doc, item_schema, item, &format!("{at}[{i}]"), errors);
            }
        }
    }
    let passing = |list: &Value| {
        list.as_array()
            .expect("oneOf/anyOf is an array")
            .iter()
            .filter(|sub| {
                let mut sub_errors = Vec::new();
                check_schema(doc, sub, value, at, &mut sub_errors);
                sub_errors.is_empty()
            })
            .count()
    };
    if let Some(list) = s.get("oneOf") {
        let n = passing(list);
        if n != 1 {
            errors.push(format!("{at}: {value} matches {n} of the oneOf schemas, not exactly one"));
        }
    }
    if let Some(list) = s.get("anyOf") {
        if passing(list) == 0 {
            errors.push(format!("{at}: {value} matches none of the anyOf schemas"));
        }
    }
}

fn assert_fits(doc: &Value, schema: &Value, value: &Value, what: &str) {
    let mut errors = Vec::new();
    check_schema(doc, schema, value, "$", &mut errors);
    assert!(errors.is_empty(), "{what} does not fit the documented schema:\n  {}\nbody: {value}", errors.join("\n  "));
}

fn component(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

// ---- Talking to the server -------------------------------------------------------------------

struct Answer {
    status: StatusCode,
    content_type: String,
    headers: reqwest::header::HeaderMap,
    /// The body, parsed, when the content type is JSON (application/json, application/*+json).
    body: Option<Value>,
    bytes: Vec<u8>,
}

fn is_json_media(content_type: &str) -> bool {
    content_type == "application/json" || (content_type.starts_with("application/") && content_type.ends_with("+json"))
}

async fn send(app: &TestApp, method: Method, path: &str, auth: Option<&str>, body: Option<&Value>, extra: &[(&str, &str)]) -> Answer {
    let mut request = app.client.request(method, app.url(path));
    match auth {
        Some("bearerAuth") => request = request.bearer_auth(app.jwt()),
        Some("basicAuth") => request = request.basic_auth(&app.account.api_key, Some(&app.account.api_secret)),
        Some(other) => panic!("unknown security scheme {other}"),
        None => {}
    }
    if let Some(body) = body {
        // A Content-Type among `extra` replaces application/json (reqwest would send both).
        request = match extra.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-type")) {
            true => request.body(body.to_string()),
            false => request.json(body),
        };
    }
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    answer_of(request.send().await.expect("request reaches the server")).await
}

/// Sends a body that is not JSON (a CSV file) with its content type.
async fn send_raw(app: &TestApp, method: Method, path: &str, (key, secret): (&str, &str), body: &str, content_type: &str) -> Answer {
    let request = app.client.request(method, app.url(path)).basic_auth(key, Some(secret));
    answer_of(request.header("Content-Type", content_type).body(body.to_string()).send().await.expect("request reaches the server")).await
}

async fn answer_of(response: reqwest::Response) -> Answer {
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().trim().to_string())
        .unwrap_or_default();
    let bytes = response.bytes().await.unwrap().to_vec();
    let body = (!bytes.is_empty() && is_json_media(&content_type)).then(|| {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("a {content_type} body that is not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)))
    });
    // Only documented non-JSON bodies (assert_documented checks which) may be anything else.
    assert!(bytes.is_empty() || body.is_some() || !content_type.is_empty(), "a body without a content type");
    Answer { status, content_type, headers, body, bytes }
}

fn is_routing_miss(answer: &Answer) -> bool {
    answer.status == StatusCode::METHOD_NOT_ALLOWED
        || (answer.status == StatusCode::NOT_FOUND
            && answer.body.as_ref().and_then(|b| b["detail"].as_str()).is_some_and(|d| d.starts_with("There is no ")))
}

/// Asserts the answer is one the operation documents: its status, content type, body and
/// headers. Returns the body.
fn assert_documented(doc: &Value, op: &Operation, answer: &Answer) -> Value {
    let name = op.name();
    let code = answer.status.as_u16().to_string();
    let declared = op.op["responses"]
        .get(&code)
        .or_else(|| op.op["responses"].get("default"))
        .unwrap_or_else(|| panic!("{name} answered {code}, which the document does not list (body {:?})", answer.body));
    let declared = resolve(doc, declared);
    match (answer.bytes.is_empty(), declared.get("content")) {
        (true, None) => {}
        (true, Some(_)) => panic!("{name} {code}: the document promises a body, none came"),
        (false, None) => panic!("{name} {code}: the document promises no body, got {:?}", String::from_utf8_lossy(&answer.bytes)),
        (false, Some(content)) => {
            let media = content
                .get(&answer.content_type)
                .unwrap_or_else(|| panic!("{name} {code}: content type {} is not documented", answer.content_type));
            match &answer.body {
                Some(body) => assert_fits(doc, &media["schema"], body, &format!("{name} {code} body")),
                // Binary content: the schema describes the bytes as a string of that media type.
                None => {
                    let schema = &media["schema"];
                    assert_eq!(schema["type"], "string", "{name} {code}: a {} body is documented as a string", answer.content_type);
                    assert_eq!(schema["contentMediaType"], answer.content_type.as_str(), "{name} {code}: contentMediaType");
                }
            }
        }
    }
    for (header, spec) in declared.get("headers").and_then(Value::as_object).into_iter().flatten() {
        // Documented response headers that the server always sends with this status.
        if matches!(header.as_str(), "WWW-Authenticate" | "Retry-After") {
            assert!(answer.headers.contains_key(header.as_str()), "{name} {code}: no {header} header ({spec})");
        }
    }
    answer.body.clone().unwrap_or(Value::Null)
}

// ---- The document on its own -----------------------------------------------------------------

#[test]
fn the_document_is_openapi_3_1() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("an openapi version string");
    assert!(version.starts_with("3.1."), "openapi is {version}, want 3.1.x");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"), "info.version follows Cargo.toml");
    assert!(doc["info"]["title"].is_string());
    assert!(!operations(&doc).is_empty());
}

#[test]
fn every_ref_resolves() {
    fn walk(doc: &Value, v: &Value, count: &mut usize) {
        match v {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                    pointer(doc, r);
                    *count += 1;
                }
                map.values().for_each(|x| walk(doc, x, count));
            }
            Value::Array(items) => items.iter().for_each(|x| walk(doc, x, count)),
            _ => {}
        }
    }
    let doc = document();
    let mut count = 0;
    walk(&doc, &doc, &mut count);
    assert!(count > 0);
}

#[test]
fn operations_are_well_formed() {
    let doc = document();
    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    let mut ids = std::collections::HashSet::new();
    for op in operations(&doc) {
        let name = op.name();
        let id = op.op["operationId"].as_str().unwrap_or_else(|| panic!("{name} has no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        let responses = op.op["responses"].as_object().unwrap_or_else(|| panic!("{name} has no responses"));
        assert!(responses.keys().any(|k| k.starts_with('2')), "{name} documents no success");
        match op.scheme(&doc) {
            Some(scheme) => {
                assert!(schemes.contains_key(&scheme), "{name} uses undefined scheme {scheme}");
                assert!(responses.contains_key("401"), "{name} needs credentials but does not document 401");
            }
            None => assert!(op.op.get("security").is_some(), "{name}: state `security: []` for open operations"),
        }
        // Path templates and path parameters agree.
        let item = &doc["paths"][op.path];
        let params: Vec<&Value> = item
            .get("parameters")
            .into_iter()
            .chain(op.op.get("parameters"))
            .flat_map(|p| p.as_array().unwrap())
            .map(|p| resolve(&doc, p))
            .collect();
        let declared: Vec<&str> = params.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect();
        let templated: Vec<&str> =
            op.path.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        assert_eq!(declared, templated, "{name}: path parameters do not match the template");
    }
}

// ---- The document against the routing code --------------------------------------------------

/// The text of `fn <name>` in `source`, from its signature to its closing brace.
fn function_text<'a>(source: &'a str, signature: &str) -> &'a str {
    let start = source.find(signature).unwrap_or_else(|| panic!("no `{signature}` in the source"));
    let open = start + source[start..].find('{').expect("a function body");
    let mut depth = 0;
    for (i, c) in source[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return &source[start..open + i + 1];
                }
            }
            _ => {}
        }
    }
    panic!("`{signature}` is not closed");
}

/// Every (METHOD, path template) the server routes, read from `http::routes` in
/// src/http/mod.rs. Only the shape used there is understood:
/// `cfg.service(endpoint("/path").get(handler).put(handler)…);` (src/http/endpoint.rs builds each
/// resource and answers its other methods with 405); anything else fails the test, so a new kind
/// of registration cannot slip past it unnoticed.
fn registered_routes(source: &str) -> BTreeSet<(String, String)> {
    let routes = function_text(source, "pub fn routes(");
    let count = |needle: &str| routes.matches(needle).count();
    for unsupported in ["web::resource(", "web::scope(", ".configure(", "web::route(", ".route(", "web::method(", ".guard(", "web::service(", ".to(", ".default_service("] {
        assert!(!routes.contains(unsupported), "http::routes uses {unsupported}, which this test does not understand yet; register paths with endpoint(...) or teach registered_routes");
    }
    let endpoint = regex::Regex::new(r#"endpoint\(\s*"([^"]+)"\s*\)"#).unwrap();
    let method = regex::Regex::new(r"^\s*\.([a-z_]+)\(\s*[A-Za-z_][A-Za-z0-9_:]*\s*\)").unwrap();
    assert_eq!(endpoint.find_iter(routes).count(), count("endpoint("), "every endpoint has one literal path");
    assert_eq!(count(".service("), count("endpoint("), "every service is an endpoint");
    assert_eq!(count("cfg.service(endpoint("), count(".service("), "every service is `cfg.service(endpoint(…)…)`");

    let mut found = BTreeSet::new();
    let param = regex::Regex::new(r"\{([^}:]+)(:[^}]*)?\}").unwrap();
    let mut seen = 0;
    for captures in endpoint.captures_iter(routes) {
        let path = &captures[1];
        // `{name:regex}` segments are documented as `{name}`.
        let template = param.replace_all(path, "{$1}").into_owned();
        let mut rest = &routes[captures.get(0).unwrap().end()..];
        let mut methods = Vec::new();
        while let Some(m) = method.captures(rest) {
            methods.push(m[1].to_string());
            rest = &rest[m.get(0).unwrap().end()..];
        }
        assert!(rest.trim_start().starts_with(");"), "endpoint(\"{path}\") is followed by something other than `.method(handler)` calls: {:?}", &rest[..rest.len().min(60)]);
        assert!(!methods.is_empty(), "endpoint(\"{path}\") routes no method");
        for method in methods {
            assert!(METHODS.contains(&method.as_str()), "{path} routes .{method}(), a method this test does not check");
            assert!(found.insert((method.to_uppercase(), template.clone())), "{} {template} is routed twice", method.to_uppercase());
        }
        seen += 1;
    }
    assert!(seen > 0, "http::routes registers no endpoints?");
    found
}

/// Every .rs file under `dir`, recursively.
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_route_the_server_registers_is_documented_and_vice_versa() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let routing = src.join("http").join("mod.rs");
    let registered = registered_routes(&std::fs::read_to_string(&routing).unwrap());
    // http::routes is the only place routes are registered (startup only `.configure`s it).
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // The live-calls console (src/http/console/) is a web page signed in with a session cookie,
    // not part of the Vonage API: its routes stay out of the document, and all live under /console.
    let console = src.join("http").join("console");
    let any_resource = regex::Regex::new(r#"(?:web::resource|endpoint)\(\s*"([^"]+)"\s*\)"#).unwrap();
    for file in files.iter().filter(|f| f.starts_with(&console)) {
        let text = std::fs::read_to_string(file).unwrap();
        for path in any_resource.captures_iter(&text) {
            assert!(&path[1] == "/console" || path[1].starts_with("/console/"), "{} routes {} outside /console", file.display(), &path[1]);
        }
    }
    // src/http/endpoint.rs is the builder endpoint(...) stands for: it makes the resources.
    let builder = src.join("http").join("endpoint.rs");
    for file in files.iter().filter(|f| **f != routing && **f != builder && !f.starts_with(&console)) {
        let text = std::fs::read_to_string(file).unwrap();
        for needle in ["web::resource(", "web::scope(", ".route(", ".service(", "#[get(", "#[post(", "#[put(", "#[delete(", "#[patch(", "#[route("] {
            assert!(!text.contains(needle), "{} registers routes ({needle}) outside http::routes; document them and teach this test", file.display());
        }
        if text.contains(".configure(") {
            assert!(text.contains(".configure(http::routes)"), "{} configures routes other than http::routes", file.display());
        }
    }

    let doc = document();
    let documented: BTreeSet<(String, String)> = operations(&doc).iter().map(|o| (o.method.to_string(), o.path.to_string())).collect();
    let undocumented: Vec<String> = registered.difference(&documented).map(|(m, p)| format!("{m} {p}")).collect();
    let unrouted: Vec<String> = documented.difference(&registered).map(|(m, p)| format!("{m} {p}")).collect();
    assert!(undocumented.is_empty(), "routed in src/http/mod.rs but missing from openapi.json: {undocumented:?}");
    assert!(unrouted.is_empty(), "in openapi.json but not routed in src/http/mod.rs: {unrouted:?}");
}

#[test]
fn the_route_reader_sees_what_it_must() {
    // A resource-wide handler, a resource beside the endpoints, or a scope must not go unnoticed.
    let ok = r#"pub fn routes(cfg: &mut web::ServiceConfig) {
        cfg.service(endpoint("/a/{id:\d+}").get(a).put(self::b));
        cfg.service(endpoint("/b")
            .post(c));
    }"#;
    let expected: BTreeSet<(String, String)> =
        [("GET", "/a/{id}"), ("PUT", "/a/{id}"), ("POST", "/b")].iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(registered_routes(ok), expected);
    for bad in [
        r#"pub fn routes(cfg: &mut web::ServiceConfig) { cfg.service(web::resource("/a").to(a)); }"#,
        r#"pub fn routes(cfg: &mut web::ServiceConfig) { cfg.service(web::scope("/v1").service(endpoint("/a").get(a))); }"#,
        r#"pub fn routes(cfg: &mut web::ServiceConfig) { cfg.route("/a", web::get().to(a)); }"#,
        r#"pub fn routes(cfg: &mut web::ServiceConfig) { cfg.service(endpoint("/a").get(a).head(b)); }"#,
        r#"pub fn routes(cfg: &mut web::ServiceConfig) { cfg.service(endpoint("/a").get(a).get(b)); }"#,
        r#"pub fn routes(cfg: &mut web::ServiceConfig) { cfg.service(endpoint("/a")); }"#,
        r#"pub fn routes(cfg: &mut web::ServiceConfig) { cfg.service(endpoint("/a").get(a).wrap(w)); }"#,
        r#"pub fn routes(cfg: &mut web::ServiceConfig) { cfg.service(index); cfg.service(endpoint("/a").get(a)); }"#,
    ] {
        assert!(std::panic::catch_unwind(|| registered_routes(bad)).is_err(), "accepted: {bad}");
    }
}

#[test]
fn the_documented_examples_fit_their_schemas() {
    let doc = document();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let mut checked = 0;
    for (name, schema) in schemas {
        for example in schema.get("examples").and_then(Value::as_array).into_iter().flatten() {
            assert_fits(&doc, schema, example, &format!("example of {name}"));
            checked += 1;
        }
    }
    for (name, response) in doc["components"]["responses"].as_object().unwrap() {
        for media in response.get("content").and_then(Value::as_object).into_iter().flatten().map(|(_, m)| m) {
            if let Some(example) = media.get("example") {
                assert_fits(&doc, &media["schema"], example, &format!("example of response {name}"));
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
    // What the server accepts, the document accepts too.
    assert_fits(&doc, &component("CreateCallRequest"), &minimal_call(), "common::minimal_call()");
}

// ---- The document against the server ---------------------------------------------------------

#[sqlx::test]
async fn the_served_document_is_this_document(pool: PgPool) {
    let app = spawn_app(pool).await;
    let response = app.client.get(app.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/json"), "content type {content_type}");
    let served: Value = response.json().await.unwrap();
    assert_eq!(served, document());
    let on_disk = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/openapi.json")).unwrap();
    assert_eq!(served, serde_json::from_str::<Value>(&on_disk).unwrap(), "the binary serves the file as it is now");
}

#[sqlx::test]
async fn every_documented_operation_is_routed_and_guarded_as_documented(pool: PgPool) {
    let app = spawn_app(pool).await;
    let doc = document();
    for op in operations(&doc) {
        let name = op.name();
        let path = op.concrete_path();
        // `{}` is never a valid body here, so nothing is created.
        let body = op.has_body().then(|| json!({}));

        let anonymous = send(&app, op.method.clone(), &path, None, body.as_ref(), &[]).await;
        assert!(!is_routing_miss(&anonymous), "{name} ({path}) is not routed: {} {:?}", anonymous.status, anonymous.body);
        match op.scheme(&doc) {
            Some(_) => assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{name} without credentials"),
            None => assert_ne!(anonymous.status, StatusCode::UNAUTHORIZED, "{name} is documented as open"),
        }
        assert_documented(&doc, &op, &anonymous);

        if let Some(scheme) = op.scheme(&doc) {
            let answer = send(&app, op.method.clone(), &path, Some(&scheme), body.as_ref(), &[]).await;
            assert!(!is_routing_miss(&answer), "{name} ({path}) is not routed: {} {:?}", answer.status, answer.body);
            assert_ne!(answer.status, StatusCode::UNAUTHORIZED, "{name} with {scheme} credentials: {:?}", answer.body);
            assert_documented(&doc, &op, &answer);
        }
    }
}

#[sqlx::test]
async fn methods_the_document_leaves_out_are_not_served(pool: PgPool) {
    let app = spawn_app(pool).await;
    let doc = document();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let concrete = concrete_path(path);
        let allowed: Vec<String> = METHODS.iter().filter(|m| item.get(**m).is_some()).map(|m| m.to_uppercase()).collect();
        for method in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let method: Method = method.to_uppercase().parse().unwrap();
            let answer = send(&app, method.clone(), &concrete, None, None, &[]).await;
            assert!(is_routing_miss(&answer), "{method} {path} is served ({}) but not documented", answer.status);
            // A 405 names the methods the path takes (RFC 9110 §15.5.6).
            if answer.status == StatusCode::METHOD_NOT_ALLOWED {
                let allow = answer.headers.get("allow").map(|v| v.to_str().unwrap().to_string());
                let mut listed: Vec<String> = allow.iter().flat_map(|a| a.split(',').map(|m| m.trim().to_string())).collect();
                listed.sort();
                let mut expected = allowed.clone();
                expected.sort();
                assert_eq!(listed, expected, "Allow of a 405 for {method} {path}: {allow:?}");
            }
        }
    }
}

fn find<'a>(ops: &'a [Operation<'a>], method: Method, path: &str) -> &'a Operation<'a> {
    ops.iter().find(|o| o.method == method && o.path == path).unwrap_or_else(|| panic!("{method} {path} is not documented"))
}

/// Sends a request to the operation with the credentials it documents.
async fn call(app: &TestApp, doc: &Value, op: &Operation<'_>, path: &str, body: Option<&Value>, extra: &[(&str, &str)]) -> Answer {
    let scheme = op.scheme(doc);
    send(app, op.method.clone(), path, scheme.as_deref(), body, extra).await
}

/// Drives each operation to success (and the idempotency outcomes) and checks every answer
/// against what the document says about it.
#[sqlx::test]
async fn successful_answers_fit_the_documented_schemas(pool: PgPool) {
    let app = spawn_app(pool).await;
    let doc = document();
    let ops = operations(&doc);
    let example = |schema: &str| doc["components"]["schemas"][schema]["examples"][0].clone();

    for path in ["/health", "/v1/openapi.json"] {
        let o = find(&ops, Method::GET, path);
        let answer = call(&app, &doc, o, path, None, &[]).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_documented(&doc, o, &answer);
    }

    // Calls: create (with the documented example), replay, key reuse, list, get.
    let create = find(&ops, Method::POST, "/v1/calls");
    let key = Uuid::new_v4().to_string();
    let key = [("Idempotency-Key", key.as_str())];
    let first = call(&app, &doc, create, "/v1/calls", Some(&example("CreateCallRequest")), &key).await;
    assert_eq!(first.status, 201, "the documented example creates a call: {:?}", first.body);
    let created = assert_documented(&doc, create, &first);
    let replay = call(&app, &doc, create, "/v1/calls", Some(&example("CreateCallRequest")), &key).await;
    assert_eq!(replay.status, 201);
    assert_eq!(assert_documented(&doc, create, &replay), created);
    assert!(create.op["responses"]["201"]["headers"].get("Idempotent-Replayed").is_some());
    assert_eq!(replay.headers["Idempotent-Replayed"], "true");
    let reuse = call(&app, &doc, create, "/v1/calls", Some(&minimal_call()), &key).await;
    assert_eq!(reuse.status, 422);
    assert_documented(&doc, create, &reuse);

    let list = find(&ops, Method::GET, "/v1/calls");
    let answer = call(&app, &doc, list, "/v1/calls?page_size=1", None, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(assert_documented(&doc, list, &answer)["_embedded"]["calls"].as_array().unwrap().len(), 1);
    let answer = call(&app, &doc, list, "/v1/calls?page_size=0", None, &[]).await;
    assert_eq!(answer.status, 400);
    assert_documented(&doc, list, &answer);

    let get = find(&ops, Method::GET, "/v1/calls/{uuid}");
    let uuid = created["uuid"].as_str().unwrap();
    let answer = call(&app, &doc, get, &format!("/v1/calls/{uuid}"), None, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(assert_documented(&doc, get, &answer)["uuid"], uuid);
    let answer = call(&app, &doc, get, "/v1/calls/not-a-uuid", None, &[]).await;
    assert_eq!(answer.status, 404, "documented: ids that are not UUIDs get 404");
    assert_documented(&doc, get, &answer);

    // The call's history: a fresh call has its started event (no workers run here, so pending).
    let events = find(&ops, Method::GET, "/v1/calls/{uuid}/events");
    let answer = call(&app, &doc, events, &format!("/v1/calls/{uuid}/events"), None, &[]).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let history = assert_documented(&doc, events, &answer);
    assert_eq!(history["uuid"], uuid);
    let list = history["_embedded"]["events"].as_array().unwrap();
    assert_eq!(history["count"], list.len());
    assert_eq!(list[0]["seq"], 1);
    assert_eq!(list[0]["kind"], "started");
    assert_eq!(list[0]["payload"]["uuid"], uuid);
    for missing in [Uuid::new_v4().to_string(), "not-a-uuid".to_string()] {
        let answer = call(&app, &doc, events, &format!("/v1/calls/{missing}/events"), None, &[]).await;
        assert_eq!(answer.status, 404, "events of {missing}");
        assert_documented(&doc, events, &answer);
    }

    // Recordings: the owning application gets the bytes; another application, even of the same
    // account, and unknown or malformed ids get 404.
    let file = find(&ops, Method::GET, "/v1/files/{id}");
    let file_id = Uuid::new_v4();
    let wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00".to_vec();
    sqlx::query(
        "INSERT INTO recordings (id, recording_uuid, call_uuid, application_id, content_type, content, size, start_time, end_time)
         VALUES ($1, $2, $3, $4, 'audio/wav', $5, $6, now(), now())",
    )
    .bind(file_id)
    .bind(Uuid::new_v4())
    .bind(Uuid::parse_str(uuid).unwrap())
    .bind(app.app_id)
    .bind(&wav)
    .bind(wav.len() as i32)
    .execute(&app.pool)
    .await
    .expect("a recording row");
    let answer = call(&app, &doc, file, &format!("/v1/files/{file_id}"), None, &[]).await;
    assert_eq!(answer.status, 200);
    assert_documented(&doc, file, &answer);
    assert_eq!(answer.content_type, "audio/wav");
    assert_eq!(answer.bytes, wav);
    let other_app = create_application(&app.pool, app.account.account_id, None).await;
    let answer = app.client.get(app.url(&format!("/v1/files/{file_id}"))).bearer_auth(app.jwt_for(other_app)).send().await.unwrap();
    assert_eq!(answer.status(), 404, "another application's JWT does not see the recording");
    for missing in [Uuid::new_v4().to_string(), "not-a-uuid".to_string()] {
        let answer = call(&app, &doc, file, &format!("/v1/files/{missing}"), None, &[]).await;
        assert_eq!(answer.status, 404, "file {missing}");
        assert_documented(&doc, file, &answer);
    }

    // Sandbox: set (with the documented example), read back, delete, read the default again.
    let put = find(&ops, Method::PUT, "/v1/sandbox/numbers/{number}");
    let get = find(&ops, Method::GET, "/v1/sandbox/numbers/{number}");
    let delete = find(&ops, Method::DELETE, "/v1/sandbox/numbers/{number}");
    let number = "/v1/sandbox/numbers/447700900123";
    let answer = call(&app, &doc, get, number, None, &[]).await;
    assert_eq!(answer.status, 200);
    let default = assert_documented(&doc, get, &answer);
    assert_eq!(default["behaviour"]["outcome"], "answer", "the configured default");
    let answer = call(&app, &doc, put, "/v1/sandbox/numbers/+447700900123", Some(&example("CalleeBehaviour")), &[]).await;
    assert_eq!(answer.status, 200, "the documented example is accepted: {:?}", answer.body);
    let set = assert_documented(&doc, put, &answer);
    assert_eq!(set["number"], "447700900123", "the + is removed");
    for (key, value) in example("CalleeBehaviour").as_object().unwrap() {
        assert_eq!(&set["behaviour"][key], value, "behaviour.{key}");
    }
    assert_eq!(set["behaviour"]["speech"], json!([]), "omitted fields take their defaults");
    let answer = call(&app, &doc, get, number, None, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(assert_documented(&doc, get, &answer), set, "GET shows what PUT set");
    for (path, body, content_type, status) in [
        (number, json!({"outcome": "answer", "colour": "blue"}), "application/json", 400),
        (number, json!({"outcome": "hold"}), "application/json", 400),
        (number, json!({"dtmf": [{"value": "1"}]}), "application/json", 400),
        ("/v1/sandbox/numbers/0123", json!({}), "application/json", 400),
        (number, json!({}), "text/plain", 415),
    ] {
        let answer = call(&app, &doc, put, path, Some(&body), &[("Content-Type", content_type)]).await;
        assert_eq!(answer.status, status, "PUT {path} {body} as {content_type}: {:?}", answer.body);
        assert_documented(&doc, put, &answer);
    }
    let answer = call(&app, &doc, put, "/v1/sandbox/numbers/%2B447700900123", Some(&json!({})), &[]).await;
    assert_eq!(answer.status, 200, "a percent-encoded + is accepted too");
    assert_eq!(assert_documented(&doc, put, &answer)["number"], "447700900123");
    assert_eq!(answer.body.unwrap()["behaviour"]["speech"], json!([]));
    let answer = call(&app, &doc, get, "/v1/sandbox/numbers/not-a-number", None, &[]).await;
    assert_eq!(answer.status, 400);
    assert_documented(&doc, get, &answer);
    let answer = call(&app, &doc, delete, number, None, &[]).await;
    assert_eq!(answer.status, 204);
    assert_documented(&doc, delete, &answer);
    let answer = call(&app, &doc, delete, number, None, &[]).await;
    assert_eq!(answer.status, 404, "nothing is set any more");
    assert_documented(&doc, delete, &answer);
    let answer = call(&app, &doc, get, number, None, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(assert_documented(&doc, get, &answer), default, "back to the configured default");
    let answer = call(&app, &doc, get, "/v1/sandbox/numbers/447700900486", None, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(assert_documented(&doc, get, &answer)["behaviour"]["outcome"], "busy", "configured by the last three digits");

    // Applications: create (key pair generated), list, get, replace, delete.
    let create = find(&ops, Method::POST, "/v2/applications");
    let answer = call(&app, &doc, create, "/v2/applications", Some(&example("ApplicationRequest")), &[]).await;
    assert_eq!(answer.status, 201, "the documented example creates an application: {:?}", answer.body);
    let application = assert_documented(&doc, create, &answer);
    assert!(application["keys"]["private_key"].is_string(), "a generated key pair returns the private key");
    let id = application["id"].as_str().unwrap();

    let list = find(&ops, Method::GET, "/v2/applications");
    let answer = call(&app, &doc, list, "/v2/applications?page_size=1&page=2", None, &[]).await;
    assert_eq!(answer.status, 200);
    assert_documented(&doc, list, &answer);

    let get = find(&ops, Method::GET, "/v2/applications/{id}");
    let answer = call(&app, &doc, get, &format!("/v2/applications/{id}"), None, &[]).await;
    assert_eq!(answer.status, 200);
    assert!(assert_documented(&doc, get, &answer)["keys"].get("private_key").is_none());

    let put = find(&ops, Method::PUT, "/v2/applications/{id}");
    let mut renamed = example("ApplicationRequest");
    renamed["name"] = json!("renamed");
    let answer = call(&app, &doc, put, &format!("/v2/applications/{id}"), Some(&renamed), &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(assert_documented(&doc, put, &answer)["name"], "renamed");

    let delete = find(&ops, Method::DELETE, "/v2/applications/{id}");
    let answer = call(&app, &doc, delete, &format!("/v2/applications/{id}"), None, &[]).await;
    assert_eq!(answer.status, 204);
    assert_documented(&doc, delete, &answer);
    let answer = call(&app, &doc, delete, &format!("/v2/applications/{id}"), None, &[]).await;
    assert_eq!(answer.status, 404);
    assert_documented(&doc, delete, &answer);
}

// ---- Billing ---------------------------------------------------------------------------------

/// Rates (CSV both ways), routing lookup, get-balance and the 402 of a call the account cannot
/// afford, each answer checked against the document.
#[sqlx::test]
async fn billing_answers_fit_the_documented_schemas(pool: PgPool) {
    let app = spawn_app(pool).await;
    let doc = document();
    let ops = operations(&doc);
    let example = |schema: &str| doc["components"]["schemas"][schema]["examples"][0].clone();

    let lookup = find(&ops, Method::POST, "/v1/routing/lookup");
    let answer = call(&app, &doc, lookup, "/v1/routing/lookup", Some(&example("RoutingLookupRequest")), &[]).await;
    assert_eq!(answer.status, 200, "the documented example is looked up: {:?}", answer.body);
    assert_eq!(assert_documented(&doc, lookup, &answer)["network"], "GB-MOBILE");
    let bad = json!({"dialed_number": "12"});
    assert!(!fits(&doc, request_schema(lookup), &bad), "the document refuses what the server refuses");
    let answer = call(&app, &doc, lookup, "/v1/routing/lookup", Some(&bad), &[]).await;
    assert_eq!(answer.status, 400);
    assert_documented(&doc, lookup, &answer);

    let export = find(&ops, Method::GET, "/v1/rates");
    let answer = call(&app, &doc, export, "/v1/rates", None, &[]).await;
    assert_eq!(answer.status, 200);
    assert_documented(&doc, export, &answer);
    let deck = String::from_utf8(answer.bytes.clone()).unwrap();
    let import = find(&ops, Method::POST, "/v1/rates");
    let csv_example = import.op["requestBody"]["content"]["text/csv"]["schema"]["examples"][0].as_str().unwrap().to_string();
    let own = (app.account.api_key.as_str(), app.account.api_secret.as_str());
    let answer = send_raw(&app, Method::POST, "/v1/rates", own, &csv_example, "text/csv").await;
    assert_eq!(answer.status, 403, "not a rates_admin account");
    assert_documented(&doc, import, &answer);
    let admin = outdial::accounts::repo::create(&app.pool, "admin", 10).await.unwrap();
    sqlx::query("UPDATE accounts SET rates_admin = true WHERE id = $1").bind(admin.account_id).execute(&app.pool).await.unwrap();
    let admin = (admin.api_key.as_str(), admin.api_secret.as_str());
    let bad = csv_example.replacen("0.024", "cheap", 1);
    let answer = send_raw(&app, Method::POST, "/v1/rates", admin, &bad, "text/csv").await;
    assert_eq!(answer.status, 422);
    assert_eq!(assert_documented(&doc, import, &answer)["invalid_rows"][0]["column"], "price_per_minute");
    let answer = send_raw(&app, Method::POST, "/v1/rates", admin, &csv_example, "text/plain").await;
    assert_eq!(answer.status, 415);
    assert_documented(&doc, import, &answer);
    let answer = send_raw(&app, Method::POST, "/v1/rates", admin, &csv_example, "text/csv").await;
    assert_eq!(answer.status, 200, "the documented example imports: {:?}", answer.body);
    assert_documented(&doc, import, &answer);
    let answer = send_raw(&app, Method::POST, "/v1/rates?mode=replace", admin, &deck, "text/csv").await;
    assert_eq!(answer.status, 200, "an export imports: {:?}", answer.body);
    assert_documented(&doc, import, &answer);

    let balance = find(&ops, Method::GET, "/account/get-balance");
    let answer = call(&app, &doc, balance, "/account/get-balance", None, &[]).await;
    assert_eq!(answer.status, 200);
    assert_eq!(assert_documented(&doc, balance, &answer), json!({"value": 0.0, "autoReload": false}));

    // A call the account cannot afford.
    sqlx::query("UPDATE accounts SET credit_limit = 0 WHERE id = $1").bind(app.account.account_id).execute(&app.pool).await.unwrap();
    let create = find(&ops, Method::POST, "/v1/calls");
    let answer = call(&app, &doc, create, "/v1/calls", Some(&example("CreateCallRequest")), &[]).await;
    assert_eq!(answer.status, 402);
    assert_documented(&doc, create, &answer);
    app.stop().await;
}

// ---- Live call control --------------------------------------------------------------------

/// The documented schema of an operation's JSON request body.
fn request_schema<'a>(op: &'a Operation) -> &'a Value {
    &op.op["requestBody"]["content"]["application/json"]["schema"]
}

fn fits(doc: &Value, schema: &Value, value: &Value) -> bool {
    let mut errors = Vec::new();
    check_schema(doc, schema, value, "$", &mut errors);
    errors.is_empty()
}

async fn set_call_status(app: &TestApp, uuid: &str, status: &str) {
    sqlx::query("UPDATE calls SET status = $1 WHERE uuid = $2::uuid").bind(status).bind(uuid).execute(&app.pool).await.expect("the call's status is set");
}

/// A 400 about the call's state: no invalid_parameters, and a detail saying what is wrong.
fn assert_refused_for_state(doc: &Value, op: &Operation, answer: &Answer, says: &str, what: &str) {
    assert_eq!(answer.status, 400, "{what}: {:?}", answer.body);
    let body = assert_documented(doc, op, answer);
    assert!(body.get("invalid_parameters").is_none(), "{what}: a refusal for the call's state names no parameter: {body}");
    assert!(body["detail"].as_str().unwrap().contains(says), "{what}: the detail says {says:?}: {body}");
}

/// One way of controlling a call: method, path template, body, whether it needs an answered
/// call, the success status, and the message of the success body.
type ControlCase = (Method, &'static str, Option<Value>, bool, u16, Option<&'static str>);

/// PUT /v1/calls/{uuid} and its media and DTMF routes. No engine runs here, so the call's status
/// is set in the database to put it in each state: a command is accepted (stored) as documented
/// when the call can take it, refused with the documented 400 when it cannot, and unknown or
/// foreign calls get 404.
#[sqlx::test]
async fn call_control_answers_fit_the_documented_schemas(pool: PgPool) {
    let app = spawn_app(pool.clone()).await;
    let doc = document();
    let ops = operations(&doc);
    let examples = |schema: &str| doc["components"]["schemas"][schema]["examples"].as_array().unwrap_or_else(|| panic!("{schema} has examples")).clone();
    let example = |schema: &str| examples(schema)[0].clone();

    // Every way of controlling a call.
    let mut cases: Vec<ControlCase> = Vec::new();
    for action in ["hangup", "mute", "unmute", "earmuff", "unearmuff"] {
        cases.push((Method::PUT, "/v1/calls/{uuid}", Some(json!({ "action": action })), false, 204, None));
    }
    for body in examples("ModifyCallRequest") {
        let transfer = body["action"] == "transfer";
        cases.push((Method::PUT, "/v1/calls/{uuid}", Some(body), transfer, 204, None));
    }
    let stream_variant = json!({"stream_url": "https://example.com/audio/hold-music.wav", "loop": "2", "level": "-0.5"});
    let talk_variant = json!({"text": "Hello", "voice_name": "Amy", "premium": "true", "style": "3", "loop": 0, "level": -1});
    let dtmf_variant = json!({"event_url": "https://example.com/webhooks/dtmf", "event_method": "GET"});
    cases.extend([
        (Method::PUT, "/v1/calls/{uuid}/stream", Some(example("StreamRequest")), true, 200, Some("Stream started")),
        (Method::PUT, "/v1/calls/{uuid}/stream", Some(stream_variant), true, 200, Some("Stream started")),
        (Method::DELETE, "/v1/calls/{uuid}/stream", None, true, 200, Some("Stream stopped")),
        (Method::PUT, "/v1/calls/{uuid}/talk", Some(example("TalkRequest")), true, 200, Some("Talk started")),
        (Method::PUT, "/v1/calls/{uuid}/talk", Some(talk_variant), true, 200, Some("Talk started")),
        (Method::DELETE, "/v1/calls/{uuid}/talk", None, true, 200, Some("Talk stopped")),
        (Method::PUT, "/v1/calls/{uuid}/dtmf", Some(example("DtmfRequest")), true, 200, Some("DTMF sent")),
        (Method::PUT, "/v1/calls/{uuid}/input/dtmf", Some(example("DtmfSubscriptionRequest")), false, 204, None),
        (Method::PUT, "/v1/calls/{uuid}/input/dtmf", Some(dtmf_variant), false, 204, None),
        (Method::DELETE, "/v1/calls/{uuid}/input/dtmf", None, false, 204, None),
    ]);
    // Every documented way of changing a call is exercised here.
    let covered: BTreeSet<(String, String)> = cases.iter().map(|c| (c.0.to_string(), c.1.to_string())).collect();
    let documented: BTreeSet<(String, String)> = ops
        .iter()
        .filter(|o| o.path.starts_with("/v1/calls/{uuid}") && o.method != Method::GET)
        .map(|o| (o.method.to_string(), o.path.to_string()))
        .collect();
    assert_eq!(covered, documented, "the call-control operations");
    // What the server accepts, the document accepts too.
    for (method, template, body, ..) in &cases {
        if let Some(body) = body {
            assert_fits(&doc, request_schema(find(&ops, method.clone(), template)), body, &format!("{method} {template} body"));
        }
    }

    let uuid = app.create_call().await;
    let at = |template: &str, id: &str| template.replace("{uuid}", id);

    // Ringing: media and transfers need an answered call; the rest is taken.
    set_call_status(&app, &uuid, "ringing").await;
    for (method, template, body, needs_answer, status, _) in &cases {
        let op = find(&ops, method.clone(), template);
        let answer = call(&app, &doc, op, &at(template, &uuid), body.as_ref(), &[]).await;
        let what = format!("{method} {template} {body:?} while ringing");
        if *needs_answer {
            assert_refused_for_state(&doc, op, &answer, "answered", &what);
        } else {
            assert_eq!(answer.status, *status, "{what}: {:?}", answer.body);
            assert_documented(&doc, op, &answer);
        }
    }

    // Answered (or answered by a machine): everything is taken.
    for call_status in ["answered", "machine"] {
        set_call_status(&app, &uuid, call_status).await;
        for (method, template, body, _, status, message) in &cases {
            let op = find(&ops, method.clone(), template);
            let answer = call(&app, &doc, op, &at(template, &uuid), body.as_ref(), &[]).await;
            assert_eq!(answer.status, *status, "{method} {template} {body:?} when {call_status}: {:?}", answer.body);
            let documented = assert_documented(&doc, op, &answer);
            if let Some(message) = message {
                assert_eq!(documented, json!({ "message": message, "uuid": uuid }));
            }
        }
    }

    // Bodies the server refuses, the document refuses too; invalid_parameters names each problem.
    let both = json!({"type": "ncco", "ncco": [{"action": "talk", "text": "Hi"}], "url": ["https://example.com/ncco"]});
    for (template, body, names) in [
        ("/v1/calls/{uuid}", json!({"action": "explode"}), vec!["action"]),
        ("/v1/calls/{uuid}", json!({}), vec!["action"]),
        ("/v1/calls/{uuid}", json!({"action": "transfer"}), vec!["destination"]),
        ("/v1/calls/{uuid}", json!({"action": "transfer", "destination": {"type": "conversation", "url": ["https://example.com/ncco"]}}), vec!["destination.type"]),
        ("/v1/calls/{uuid}", json!({"action": "transfer", "destination": {"type": "ncco"}}), vec!["destination.ncco"]),
        ("/v1/calls/{uuid}", json!({"action": "transfer", "destination": both}), vec!["destination.url"]),
        ("/v1/calls/{uuid}", json!({"action": "transfer", "destination": {"type": "ncco", "ncco": [{"action": "talk"}]}}), vec!["destination.ncco[0].text"]),
        ("/v1/calls/{uuid}/stream", json!({"loop": 1}), vec!["stream_url"]),
        ("/v1/calls/{uuid}/stream", json!({"stream_url": ["https://example.com/a.mp3"], "loop": 101, "level": "loud"}), vec!["loop", "level"]),
        ("/v1/calls/{uuid}/stream", json!({"stream_url": ["https://example.com/a.mp3", "https://example.com/b.mp3"]}), vec!["stream_url"]),
        ("/v1/calls/{uuid}/talk", json!({"level": 3}), vec!["text", "level"]),
        ("/v1/calls/{uuid}/talk", json!({"text": "x".repeat(1501)}), vec!["text"]),
        ("/v1/calls/{uuid}/talk", json!({"text": "  "}), vec!["text"]),
        ("/v1/calls/{uuid}/talk", json!({"text": "Hi", "style": 101, "premium": "yes"}), vec!["style", "premium"]),
        ("/v1/calls/{uuid}/dtmf", json!({"digits": "12a"}), vec!["digits"]),
        ("/v1/calls/{uuid}/dtmf", json!({}), vec!["digits"]),
        ("/v1/calls/{uuid}/input/dtmf", json!({}), vec!["event_url"]),
        ("/v1/calls/{uuid}/input/dtmf", json!({"event_url": ["https://example.com/keys"], "event_method": "PUT"}), vec!["event_method"]),
    ] {
        let op = find(&ops, Method::PUT, template);
        assert!(!fits(&doc, request_schema(op), &body), "PUT {template}: the document accepts {body}, which the server refuses");
        let answer = call(&app, &doc, op, &at(template, &uuid), Some(&body), &[]).await;
        assert_eq!(answer.status, 400, "PUT {template} {body}: {:?}", answer.body);
        let problem = assert_documented(&doc, op, &answer);
        let named: Vec<&str> = problem["invalid_parameters"].as_array().unwrap_or_else(|| panic!("{problem}")).iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(named, names, "PUT {template} {body}");
        // The body is checked before the call: an unknown call gets the same 400.
        let unknown = call(&app, &doc, op, &at(template, &Uuid::new_v4().to_string()), Some(&body), &[]).await;
        assert_eq!(unknown.status, 400, "PUT {template} {body} to an unknown call");
    }
    // Not JSON, no body, and another content type.
    for (method, template, body, ..) in cases.iter().filter(|c| c.2.is_some()) {
        let op = find(&ops, method.clone(), template);
        let path = at(template, &uuid);
        let answer = call(&app, &doc, op, &path, body.as_ref(), &[("Content-Type", "text/plain")]).await;
        assert_eq!(answer.status, 415, "{method} {template} as text/plain");
        assert_documented(&doc, op, &answer);
        let answer = call(&app, &doc, op, &path, None, &[]).await;
        assert_eq!(answer.status, 400, "{method} {template} without a body");
        assert!(assert_documented(&doc, op, &answer).get("invalid_parameters").is_none());
    }

    // Unknown calls, ids that are not UUIDs and another account's call: 404.
    let other = outdial::accounts::repo::create(&pool, "other", 10).await.unwrap();
    let other_app = create_application(&pool, other.account_id, None).await;
    for (method, template, body, ..) in &cases {
        let op = find(&ops, method.clone(), template);
        for id in [Uuid::new_v4().to_string(), "not-a-uuid".to_string()] {
            let answer = call(&app, &doc, op, &at(template, &id), body.as_ref(), &[]).await;
            assert_eq!(answer.status, 404, "{method} {template} for {id}: {:?}", answer.body);
            assert_documented(&doc, op, &answer);
        }
        let mut request = app.client.request(method.clone(), app.url(&at(template, &uuid))).bearer_auth(app.jwt_for(other_app));
        if let Some(body) = body {
            request = request.json(body);
        }
        assert_eq!(request.send().await.unwrap().status(), 404, "{method} {template} from another account");
    }

    // Ended: every command is refused, whatever it is.
    for ended in ["completed", "unanswered"] {
        set_call_status(&app, &uuid, ended).await;
        for (method, template, body, ..) in &cases {
            let op = find(&ops, method.clone(), template);
            let answer = call(&app, &doc, op, &at(template, &uuid), body.as_ref(), &[]).await;
            assert_refused_for_state(&doc, op, &answer, "has ended", &format!("{method} {template} {body:?} when {ended}"));
        }
    }
}

/// With the call workers running, each command's effect shows in the call's history as the
/// document describes it: media lines (state logged) and a transfer event; and a call that has
/// ended refuses commands.
#[sqlx::test]
async fn call_control_effects_show_in_the_history_as_documented(pool: PgPool) {
    let app = spawn_engine_app(pool).await;
    let doc = document();
    let ops = operations(&doc);
    let example = |schema: &str| doc["components"]["schemas"][schema]["examples"][0].clone();
    let modify = find(&ops, Method::PUT, "/v1/calls/{uuid}");
    let subscribe = find(&ops, Method::PUT, "/v1/calls/{uuid}/input/dtmf");
    let events = find(&ops, Method::GET, "/v1/calls/{uuid}/events");

    let mut body = minimal_call();
    body["ncco"] = json!([{"action": "wait", "timeout": 600}]);
    let uuid = app.place(&body).await;
    app.wait_call_status(&uuid, "answered").await;
    let path = format!("/v1/calls/{uuid}");
    let transfer = example("ModifyCallRequest");
    assert_eq!(transfer["destination"]["ncco"][0]["action"], "talk", "the first example transfers to an inline talk");
    let said = transfer["destination"]["ncco"][0]["text"].as_str().unwrap().to_string();
    for (op, p, b) in [
        (modify, path.clone(), json!({"action": "mute"})),
        (subscribe, format!("{path}/input/dtmf"), example("DtmfSubscriptionRequest")),
        (modify, path.clone(), transfer),
    ] {
        let answer = call(&app, &doc, op, &p, Some(&b), &[]).await;
        assert_eq!(answer.status, 204, "{} {b}: {:?}", op.name(), answer.body);
        assert_documented(&doc, op, &answer);
    }
    // The transferred NCCO says its line and ends the call.
    app.wait_call_status(&uuid, "completed").await;

    let history_path = format!("{path}/events");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let history = loop {
        let answer = call(&app, &doc, events, &history_path, None, &[]).await;
        assert_eq!(answer.status, 200);
        let history = assert_documented(&doc, events, &answer);
        let lines: Vec<String> = history["_embedded"]["events"].as_array().unwrap().iter().filter(|e| e["kind"] == "media").map(|e| e["payload"]["what"].as_str().unwrap().to_string()).collect();
        let heard = format!("heard talk \"{said}\"");
        if ["muted: the callee's audio is not sent", "real-time DTMF subscribed", heard.as_str()].iter().all(|l| lines.iter().any(|x| x == l)) {
            break history;
        }
        assert!(std::time::Instant::now() < deadline, "the history lacks the commands' effects: {lines:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let list = history["_embedded"]["events"].as_array().unwrap();
    for media in list.iter().filter(|e| e["kind"] == "media") {
        assert_eq!(media["state"], "logged", "{media}");
        assert_eq!(media["url"], Value::Null, "{media}");
        assert_eq!(media["delivered_at"], Value::Null, "{media}");
        assert_eq!(media["attempts"], json!([]), "{media}");
        let keys: BTreeSet<&str> = media["payload"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["uuid", "what", "timestamp"]), "{media}");
        assert_eq!(media["payload"]["uuid"], uuid.as_str());
    }
    let transfers: Vec<&Value> = list.iter().filter(|e| e["kind"] == "transfer").collect();
    assert_eq!(transfers.len(), 1, "one transfer event: {list:?}");
    let payload = &transfers[0]["payload"];
    assert_eq!((payload["type"].as_str(), payload["status"].as_str()), (Some("transfer"), Some("transfer")));
    assert_eq!(payload["uuid"], uuid.as_str());
    assert_eq!(payload["conversation_uuid_from"], payload["conversation_uuid_to"], "a transfer to a new NCCO stays in the call's conversation");
    assert_ne!(transfers[0]["state"], "logged", "a transfer event is a webhook");

    // Ended now: refused.
    let answer = call(&app, &doc, modify, &path, Some(&json!({"action": "hangup"})), &[]).await;
    assert_refused_for_state(&doc, modify, &answer, "has ended", "hangup after the call completed");
    app.stop().await;
}
