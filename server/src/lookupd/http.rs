//! nsqlookupd's HTTP API for consumers and tools: NSQ's paths, parameters and JSON shapes.

use super::registry::{filter_active, keys, subkeys, Category, Registration};
use super::Lookupd;
use crate::nsqd::http::Reply;
use crate::protocol::is_valid_name;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

type Params = Query<HashMap<String, String>>;
type Shared = State<Arc<Lookupd>>;

/// The router, mounted on `--http-address`.
pub fn router(lookupd: Arc<Lookupd>) -> Router {
    Router::new()
        .route("/ping", only_get(get(|| async { Reply::Text("OK") })))
        .route(
            "/info",
            only_get(get(|| async {
                Reply::Json(json!({
                    "version": super::VERSION,
                    "nsq_rs_version": crate::version::NSQ_RS_VERSION,
                }))
            })),
        )
        .route("/debug", only_get(get(debug)))
        .route("/metrics", only_get(get(metrics)))
        .route("/lookup", only_get(get(lookup)))
        .route("/topics", only_get(get(topics)))
        .route("/channels", only_get(get(channels)))
        .route("/nodes", only_get(get(nodes)))
        .route("/topic/create", only_post(post(create_topic)))
        .route("/topic/delete", only_post(post(delete_topic)))
        .route("/topic/tombstone", only_post(post(tombstone)))
        .route("/channel/create", only_post(post(create_channel)))
        .route("/channel/delete", only_post(post(delete_channel)))
        .fallback(|| async { Reply::Error(StatusCode::NOT_FOUND, "NOT_FOUND") })
        .layer(axum::middleware::from_fn(crate::nsqd::http::log_request))
        .with_state(lookupd)
}

fn only_get(route: MethodRouter<Arc<Lookupd>>) -> MethodRouter<Arc<Lookupd>> {
    route.fallback(|| async { method_not_allowed("GET") })
}

fn only_post(route: MethodRouter<Arc<Lookupd>>) -> MethodRouter<Arc<Lookupd>> {
    route.fallback(|| async { method_not_allowed("POST") })
}

fn method_not_allowed(allowed: &'static str) -> Response {
    let mut r = Reply::Error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").into_response();
    let allow = if allowed == "GET" {
        "GET, OPTIONS"
    } else {
        "OPTIONS, POST"
    };
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

fn bad(message: &'static str) -> Reply {
    Reply::Error(StatusCode::BAD_REQUEST, message)
}

/// The `topic` parameter: present and valid.
fn topic_param(params: &HashMap<String, String>) -> Result<String, Reply> {
    let topic = params
        .get("topic")
        .ok_or_else(|| bad("MISSING_ARG_TOPIC"))?;
    if !is_valid_name(topic) {
        return Err(bad("INVALID_ARG_TOPIC"));
    }
    Ok(topic.clone())
}

/// The `topic` and `channel` parameters: present and valid.
fn topic_channel_params(params: &HashMap<String, String>) -> Result<(String, String), Reply> {
    let topic = topic_param(params)?;
    let channel = params
        .get("channel")
        .ok_or_else(|| bad("MISSING_ARG_CHANNEL"))?;
    if !is_valid_name(channel) {
        return Err(bad("INVALID_ARG_CHANNEL"));
    }
    Ok((topic, channel.clone()))
}

async fn lookup(State(lookupd): Shared, Query(params): Params) -> Reply {
    let Some(topic) = params.get("topic") else {
        return bad("MISSING_ARG_TOPIC");
    };
    let db = lookupd.registry();
    if db.find_registrations(Category::Topic, topic, "").is_empty() {
        return Reply::Error(StatusCode::NOT_FOUND, "TOPIC_NOT_FOUND");
    }
    let channels = subkeys(&db.find_registrations(Category::Channel, topic, "*"));
    let producers = filter_active(
        db.find_producers(Category::Topic, topic, ""),
        lookupd.opts.inactive_producer_timeout,
        lookupd.opts.tombstone_lifetime,
    );
    let producers: Vec<Value> = producers.iter().map(|p| json!(&*p.peer)).collect();
    Reply::Json(json!({ "channels": channels, "producers": producers }))
}

async fn topics(State(lookupd): Shared) -> Reply {
    let topics = keys(
        &lookupd
            .registry()
            .find_registrations(Category::Topic, "*", ""),
    );
    Reply::Json(json!({ "topics": topics }))
}

async fn channels(State(lookupd): Shared, Query(params): Params) -> Reply {
    let topic = match topic_param(&params) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let channels = subkeys(
        &lookupd
            .registry()
            .find_registrations(Category::Channel, &topic, "*"),
    );
    Reply::Json(json!({ "channels": channels }))
}

async fn nodes(State(lookupd): Shared) -> Reply {
    let db = lookupd.registry();
    let opts = &lookupd.opts;
    // Tombstoned producers stay listed here (with their tombstones), inactive ones do not.
    let clients = filter_active(
        db.find_producers(Category::Client, "", ""),
        opts.inactive_producer_timeout,
        Duration::ZERO,
    );
    let mut nodes = Vec::with_capacity(clients.len());
    for client in clients {
        let topics = keys(
            &db.lookup_registrations(&client.peer.id)
                .into_iter()
                .filter(|r| r.category == Category::Topic)
                .collect::<Vec<_>>(),
        );
        let tombstones: Vec<bool> = topics
            .iter()
            .map(|t| {
                db.find_producers(Category::Topic, t, "").iter().any(|p| {
                    p.peer.id == client.peer.id && p.is_tombstoned(opts.tombstone_lifetime)
                })
            })
            .collect();
        let mut node = match json!(&*client.peer) {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        node.insert("tombstones".into(), json!(tombstones));
        node.insert("topics".into(), json!(topics));
        nodes.push(Value::Object(node));
    }
    Reply::Json(json!({ "producers": nodes }))
}

/// Prometheus `/metrics` (ours; see [`super::metrics`]).
async fn metrics(State(lookupd): Shared) -> Response {
    match super::metrics::render(&lookupd) {
        Ok(text) => {
            let mut r = (StatusCode::OK, text).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::nsqd::metrics::CONTENT_TYPE),
            );
            r
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response(),
    }
}

async fn debug(State(lookupd): Shared) -> Reply {
    let db = lookupd.registry();
    let mut out = Map::new();
    for (r, producers) in db.all() {
        // NSQ lists only registrations that have producers.
        if producers.is_empty() {
            continue;
        }
        let key = format!("{}:{}:{}", r.category.as_str(), r.key, r.subkey);
        let list: Vec<Value> = producers
            .values()
            .map(|p| {
                json!({
                    "id": p.peer.id,
                    "hostname": p.peer.hostname,
                    "broadcast_address": p.peer.broadcast_address,
                    "tcp_port": p.peer.tcp_port,
                    "http_port": p.peer.http_port,
                    "version": p.peer.version,
                    "last_update": p.peer.last_update.load(std::sync::atomic::Ordering::Relaxed),
                    "tombstoned": p.tombstoned_at.is_some(),
                    "tombstoned_at": p.tombstoned_at.unwrap_or(0),
                })
            })
            .collect();
        out.insert(key, Value::Array(list));
    }
    Reply::Json(Value::Object(out))
}

async fn create_topic(State(lookupd): Shared, Query(params): Params) -> Reply {
    let topic = match topic_param(&params) {
        Ok(t) => t,
        Err(r) => return r,
    };
    tracing::info!("DB: adding topic({topic})");
    lookupd
        .registry()
        .add_registration(Registration::topic(&topic));
    Reply::Empty
}

async fn delete_topic(State(lookupd): Shared, Query(params): Params) -> Reply {
    let topic = match topic_param(&params) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut db = lookupd.registry();
    for r in db.find_registrations(Category::Channel, &topic, "*") {
        tracing::info!("DB: removing channel({}) from topic({topic})", r.subkey);
        db.remove_registration(&r);
    }
    for r in db.find_registrations(Category::Topic, &topic, "") {
        tracing::info!("DB: removing topic({topic})");
        db.remove_registration(&r);
    }
    Reply::Empty
}

async fn tombstone(State(lookupd): Shared, Query(params): Params) -> Reply {
    let topic = match topic_param(&params) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let Some(node) = params.get("node") else {
        return bad("MISSING_ARG_NODE");
    };
    let count = lookupd.registry().tombstone(&topic, node);
    tracing::info!("DB: tombstoned {count} producer(s) {node} of topic({topic})");
    Reply::Empty
}

async fn create_channel(State(lookupd): Shared, Query(params): Params) -> Reply {
    let (topic, channel) = match topic_channel_params(&params) {
        Ok(tc) => tc,
        Err(r) => return r,
    };
    tracing::info!("DB: adding channel({channel}) in topic({topic})");
    let mut db = lookupd.registry();
    db.add_registration(Registration::channel(&topic, &channel));
    db.add_registration(Registration::topic(&topic));
    Reply::Empty
}

async fn delete_channel(State(lookupd): Shared, Query(params): Params) -> Reply {
    let (topic, channel) = match topic_channel_params(&params) {
        Ok(tc) => tc,
        Err(r) => return r,
    };
    let mut db = lookupd.registry();
    let found = db.find_registrations(Category::Channel, &topic, &channel);
    if found.is_empty() {
        return Reply::Error(StatusCode::NOT_FOUND, "CHANNEL_NOT_FOUND");
    }
    for r in found {
        tracing::info!("DB: removing channel({channel}) from topic({topic})");
        db.remove_registration(&r);
    }
    Reply::Empty
}
