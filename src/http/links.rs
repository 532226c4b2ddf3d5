//! HAL `_links` for offset-paged lists. Hrefs are absolute: the Node SDK's getAllCalls does
//! `new URL(next.href)` and reads `record_index` from it.

use serde_json::{json, Map, Value};
use std::collections::HashMap;

fn href(base: &str, query: &HashMap<String, String>, record_index: i64, page_size: i64) -> Value {
    let mut url = url::Url::parse(base).expect("base URL is absolute");
    {
        let mut pairs = url.query_pairs_mut();
        let mut keys: Vec<_> = query.keys().filter(|k| *k != "record_index" && *k != "page_size").collect();
        keys.sort();
        for key in keys {
            pairs.append_pair(key, &query[key]);
        }
        pairs.append_pair("page_size", &page_size.to_string());
        pairs.append_pair("record_index", &record_index.to_string());
    }
    json!({ "href": url.to_string() })
}

pub fn page_links(base: &str, query: &HashMap<String, String>, record_index: i64, page_size: i64, total: i64) -> Value {
    let mut links = Map::new();
    let last_index = if total == 0 { 0 } else { (total - 1) / page_size * page_size };
    links.insert("self".into(), href(base, query, record_index, page_size));
    links.insert("first".into(), href(base, query, 0, page_size));
    links.insert("last".into(), href(base, query, last_index, page_size));
    if record_index > 0 {
        let prev = (record_index - page_size).max(0).min(last_index);
        links.insert("prev".into(), href(base, query, prev, page_size));
    }
    if record_index + page_size < total {
        links.insert("next".into(), href(base, query, record_index + page_size, page_size));
    }
    Value::Object(links)
}
