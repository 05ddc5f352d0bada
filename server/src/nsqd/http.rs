//! nsqd's HTTP API: NSQ's paths, parameters, methods, status codes and JSON shapes.

use super::context::{Nsqd, PublishError};
use super::stats::{self, StatsQuery};
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, MethodRouter};
use axum::Router;
use nsq_engine::{name, Error as EngineError};
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

pub(super) type Params = Query<Vec<(String, String)>>;

/// Query parameters by name; a repeated name keeps its first value, as Go's `Get` does.
pub(super) fn first_wins(Query(pairs): Params) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for (k, v) in pairs {
        map.entry(k).or_insert(v);
    }
    map
}
pub(super) type Shared = State<Arc<Nsqd>>;

const NSQ_CONTENT_TYPE: &str = "nsq; version=1.0";

/// An HTTP answer in NSQ's style: plain `OK`/data, or `{"message": ...}` with a status.
#[derive(Debug)]
pub enum Reply {
    /// 200 with a plain-text body.
    Text(&'static str),
    /// 200 with a plain-text body of ours.
    String(String),
    /// 200 with an empty body.
    Empty,
    /// 200 with a JSON body.
    Json(serde_json::Value),
    /// 200 with JSON already serialized (keeps a struct's field order, as NSQ's Go structs).
    JsonText(String),
    /// An error status with NSQ's error text.
    Error(StatusCode, &'static str),
    /// An error status with a text of ours.
    ErrorText(StatusCode, String),
    /// An error status with a plain-text body (NSQ's `PlainText` handlers: `/ping`).
    PlainError(StatusCode, String),
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let (status, content_type, body) = match self {
            Reply::Text(t) => (StatusCode::OK, "text/plain; charset=utf-8", t.to_string()),
            Reply::String(t) => (StatusCode::OK, "text/plain; charset=utf-8", t),
            Reply::Empty => (StatusCode::OK, "text/plain; charset=utf-8", String::new()),
            Reply::Json(v) => (
                StatusCode::OK,
                "application/json; charset=utf-8",
                v.to_string(),
            ),
            Reply::JsonText(t) => (StatusCode::OK, "application/json; charset=utf-8", t),
            Reply::Error(s, m) => (
                s,
                "application/json; charset=utf-8",
                serde_json::json!({ "message": m }).to_string(),
            ),
            Reply::ErrorText(s, m) => (
                s,
                "application/json; charset=utf-8",
                serde_json::json!({ "message": m }).to_string(),
            ),
            Reply::PlainError(s, m) => (s, "text/plain; charset=utf-8", m),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(
            "X-NSQ-Content-Type",
            HeaderValue::from_static(NSQ_CONTENT_TYPE),
        );
        response
    }
}

pub(super) fn bad(message: &'static str) -> Reply {
    Reply::Error(StatusCode::BAD_REQUEST, message)
}

pub(super) fn not_found(message: &'static str) -> Reply {
    Reply::Error(StatusCode::NOT_FOUND, message)
}

pub(super) fn internal(e: impl std::fmt::Display) -> Reply {
    Reply::ErrorText(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("INTERNAL_ERROR: {e}"),
    )
}

/// The router, mounted on `--http-address`.
pub fn router(nsqd: Arc<Nsqd>) -> Router {
    let size_check = axum::middleware::from_fn_with_state(
        nsqd.clone(),
        super::http_edge::refuse_declared_oversize,
    );
    Router::new()
        .route("/ping", get_only(ping))
        .route("/info", get_only(info))
        .route("/stats", get_only(stats_handler))
        .route("/metrics", get_only(metrics_handler))
        .route(
            "/pub",
            post_only(publish)
                .layer::<_, Infallible>(size_check.clone())
                .layer(body_limit(nsqd.opts.max_msg_size)),
        )
        .route(
            "/mpub",
            post_only(multi_publish)
                .layer::<_, Infallible>(size_check)
                .layer(body_limit(nsqd.opts.max_body_size)),
        )
        .route("/topic/retention", post_only(super::replay::retention))
        .route("/channel/rewind", post_only(super::replay::rewind))
        .route("/topic/{action}", any(topic_action))
        .route("/channel/{action}", any(channel_action))
        .route(
            "/config/{option}",
            get(get_config)
                .put(put_config)
                .head(config_method_not_allowed)
                .fallback(config_method_not_allowed),
        )
        .fallback(fallback)
        .layer(axum::middleware::from_fn(log_request))
        .with_state(nsqd)
}

/// Bodies are read up to one byte past NSQ's limit (as Go's `io.LimitReader(max+1)`), so a
/// body without `Content-Length` is refused with NSQ's code instead of axum's 2 MB default.
fn body_limit(max: usize) -> DefaultBodyLimit {
    DefaultBodyLimit::max(max.saturating_add(1))
}

/// The body, or the 413 NSQ answers when it is longer than `max` (`code`).
fn limited_body(
    body: Result<Bytes, BytesRejection>,
    max: usize,
    code: &'static str,
) -> Result<Bytes, Reply> {
    match body {
        Ok(b) if b.len() > max => Err(Reply::Error(StatusCode::PAYLOAD_TOO_LARGE, code)),
        Ok(b) => Ok(b),
        Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
            Err(Reply::Error(StatusCode::PAYLOAD_TOO_LARGE, code))
        }
        Err(e) => Err(Reply::ErrorText(
            StatusCode::BAD_REQUEST,
            format!("BAD_BODY: {e}"),
        )),
    }
}

/// One line per request, as NSQ logs them: `200 GET /ping (127.0.0.1:55632) 1.9µs`.
pub(crate) async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_string());
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or_else(String::new, |c| c.0.to_string());
    let response = next.run(request).await;
    tracing::info!(
        "{} {method} {path} ({peer}) {:?}",
        response.status().as_u16(),
        started.elapsed()
    );
    response
}

/// Unknown paths: NSQ's router redirects `/route/` to `/route` (301 for GET, 307 otherwise,
/// so clients repeat the method and body); everything else is 404.
async fn fallback(method: Method, uri: axum::http::Uri) -> Response {
    let path = uri.path();
    let trimmed = path.trim_end_matches('/');
    let known = ["/ping", "/info", "/stats", "/pub", "/mpub"].contains(&trimmed)
        || ["/topic/", "/channel/", "/config/"].iter().any(|p| {
            trimmed
                .strip_prefix(p)
                .is_some_and(|rest| !rest.is_empty() && !rest.contains('/'))
        });
    if path.len() > 1 && path.ends_with('/') && known {
        let location = match uri.query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        let status = if method == Method::GET || method == Method::HEAD {
            StatusCode::MOVED_PERMANENTLY
        } else {
            StatusCode::TEMPORARY_REDIRECT
        };
        if let Ok(value) = HeaderValue::from_str(&location) {
            let mut r = status.into_response();
            r.headers_mut().insert(header::LOCATION, value);
            return r;
        }
    }
    not_found("NOT_FOUND").into_response()
}

/// A POST route that answers other methods with NSQ's 405.
pub(super) fn post_only<H, T>(handler: H) -> MethodRouter<Arc<Nsqd>>
where
    H: Handler<T, Arc<Nsqd>>,
    T: 'static,
{
    post(handler).fallback(method_not_allowed_post)
}

async fn method_not_allowed_post(method: Method) -> Response {
    method_not_allowed_or_options(&method, "OPTIONS, POST")
}

/// A GET route that answers other methods (HEAD included, as NSQ's router does) with 405.
fn get_only<H, T>(handler: H) -> MethodRouter<Arc<Nsqd>>
where
    H: Handler<T, Arc<Nsqd>>,
    T: 'static,
{
    get(handler)
        .head(method_not_allowed_get)
        .fallback(method_not_allowed_get)
}

async fn method_not_allowed_get(method: Method) -> Response {
    method_not_allowed_or_options(&method, "GET, OPTIONS")
}

async fn config_method_not_allowed(method: Method) -> Response {
    method_not_allowed_or_options(&method, "GET, OPTIONS, PUT")
}

/// OPTIONS is answered 200 with `Allow` (as NSQ's router does); other methods get 405.
fn method_not_allowed_or_options(method: &Method, allow: &'static str) -> Response {
    if method == Method::OPTIONS {
        let mut r = StatusCode::OK.into_response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        return r;
    }
    method_not_allowed(allow)
}

/// NSQ's 405: JSON message plus the `Allow` header.
fn method_not_allowed(allow: &'static str) -> Response {
    let mut r = Reply::Error(StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED").into_response();
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

async fn ping(State(nsqd): Shared) -> Reply {
    match nsqd.health() {
        None => Reply::Text("OK"),
        Some(e) => Reply::PlainError(StatusCode::INTERNAL_SERVER_ERROR, format!("NOK - {e}")),
    }
}

/// `/info`, in NSQ's field order.
#[derive(serde::Serialize)]
struct Info {
    version: &'static str,
    broadcast_address: String,
    hostname: String,
    http_port: u16,
    tcp_port: u16,
    start_time: i64,
    max_heartbeat_interval: u64,
    max_output_buffer_size: i64,
    max_output_buffer_timeout: u64,
    max_deflate_level: i64,
    /// Not NSQ's: this build's own release (`version` is the NSQ version spoken).
    nsq_rs_version: &'static str,
}

/// Serializes `value` keeping its field order.
fn json_text(value: &impl serde::Serialize) -> Reply {
    match serde_json::to_string(value) {
        Ok(t) => Reply::JsonText(t),
        Err(e) => internal(e),
    }
}

async fn info(State(nsqd): Shared) -> Reply {
    let o = &nsqd.opts;
    json_text(&Info {
        version: super::VERSION,
        broadcast_address: o.broadcast_address.clone(),
        hostname: super::options::hostname(),
        http_port: o.broadcast_http_port(),
        tcp_port: o.broadcast_tcp_port(),
        start_time: nsqd.start_time,
        max_heartbeat_interval: o.max_heartbeat_interval.as_nanos() as u64,
        max_output_buffer_size: o.max_output_buffer_size,
        max_output_buffer_timeout: o.max_output_buffer_timeout.as_nanos() as u64,
        max_deflate_level: o.max_deflate_level,
        nsq_rs_version: crate::version::NSQ_RS_VERSION,
    })
}

fn flag(params: &HashMap<String, String>, key: &str, default: bool) -> bool {
    params.get(key).map_or(default, |v| v == "true" || v == "1")
}

/// Prometheus `/metrics` (ours; see [`super::metrics`]).
async fn metrics_handler(State(nsqd): Shared) -> Response {
    let exclude = nsqd.opts.metrics_exclude_ephemeral;
    // Collecting reads message timestamps from the log.
    match tokio::task::block_in_place(|| super::metrics::render(&nsqd, exclude)) {
        Ok(text) => {
            let mut r = (StatusCode::OK, text).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(super::metrics::CONTENT_TYPE),
            );
            r
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response(),
    }
}

async fn stats_handler(State(nsqd): Shared, params: Params) -> Response {
    let params = first_wins(params);
    // An empty filter is no filter, as in NSQ.
    let filter = |key: &str| params.get(key).filter(|v| !v.is_empty()).cloned();
    let query = StatsQuery {
        topic: filter("topic"),
        channel: filter("channel"),
        include_clients: flag(&params, "include_clients", true),
        include_mem: flag(&params, "include_mem", true),
    };
    let stats = stats::collect(&nsqd, &query);
    match params.get("format").map(String::as_str) {
        Some("json") => json_text(&stats).into_response(),
        _ => {
            let now_ns = nsqd.engine.now();
            let uptime_ns = (now_ns - nsqd.start_time.saturating_mul(1_000_000_000)).max(0);
            let text = stats::render_text(
                &stats,
                std::time::Duration::from_nanos(uptime_ns as u64),
                now_ns / 1_000_000_000,
            );
            let mut r = (StatusCode::OK, text).into_response();
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r.headers_mut().insert(
                "X-NSQ-Content-Type",
                HeaderValue::from_static(NSQ_CONTENT_TYPE),
            );
            r
        }
    }
}

/// The `topic` parameter, checked as NSQ does.
pub(super) fn topic_param(
    params: &HashMap<String, String>,
    invalid: &'static str,
) -> Result<String, Reply> {
    match params.get("topic") {
        None => Err(bad("MISSING_ARG_TOPIC")),
        Some(t) if !name::is_valid(t) => Err(bad(invalid)),
        Some(t) => Ok(t.clone()),
    }
}

pub(super) fn channel_param(
    params: &HashMap<String, String>,
    invalid: &'static str,
) -> Result<String, Reply> {
    match params.get("channel") {
        None => Err(bad("MISSING_ARG_CHANNEL")),
        Some(c) if !name::is_valid(c) => Err(bad(invalid)),
        Some(c) => Ok(c.clone()),
    }
}

fn publish_error(e: PublishError) -> Reply {
    match e {
        PublishError::BadTopic(_) => bad("INVALID_TOPIC"),
        PublishError::Exiting => Reply::Error(StatusCode::SERVICE_UNAVAILABLE, "EXITING"),
        PublishError::Engine(e) => internal(e),
    }
}

async fn publish(
    State(nsqd): Shared,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let params = first_wins(params);
    let body = match limited_body(body, nsqd.opts.max_msg_size, "MSG_TOO_BIG") {
        Ok(b) => b,
        Err(r) => return r,
    };
    if body.is_empty() {
        return bad("MSG_EMPTY");
    }
    let topic = match topic_param(&params, "INVALID_TOPIC") {
        Ok(t) => t,
        Err(r) => return r,
    };
    let mut deliver_at = 0;
    if let Some(defer) = params.get("defer") {
        let max = nsqd.opts.max_req_timeout.as_millis() as i64;
        match defer.parse::<i64>() {
            Ok(ms) if (0..=max).contains(&ms) => {
                if ms > 0 {
                    deliver_at = nsqd.engine.now() + ms * 1_000_000;
                }
            }
            _ => return bad("INVALID_DEFER"),
        }
    }
    match nsqd.publish(&topic, &[&body[..]], deliver_at).await {
        Ok(_) => Reply::Text("OK"),
        Err(e) => publish_error(e),
    }
}

async fn multi_publish(
    State(nsqd): Shared,
    params: Params,
    body: Result<Bytes, BytesRejection>,
) -> Reply {
    let params = first_wins(params);
    let topic = match topic_param(&params, "INVALID_TOPIC") {
        Ok(t) => t,
        Err(r) => return r,
    };
    let body = match limited_body(body, nsqd.opts.max_body_size, "BODY_TOO_BIG") {
        Ok(b) => b,
        Err(r) => return r,
    };
    let binary = flag(&params, "binary", false);
    let messages = match crate::protocol::split_http_mpub(
        &body,
        binary,
        nsqd.opts.max_msg_size,
        nsqd.opts.max_body_size,
    ) {
        Ok(m) => m,
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::PAYLOAD_TOO_LARGE);
            return Reply::Error(status, e.code());
        }
    };
    match nsqd.publish(&topic, &messages, 0).await {
        Ok(_) => Reply::Text("OK"),
        Err(e) => publish_error(e),
    }
}

fn engine_error(e: EngineError) -> Reply {
    match e {
        EngineError::TopicNotFound(_) => not_found("TOPIC_NOT_FOUND"),
        EngineError::ChannelNotFound(_) => not_found("CHANNEL_NOT_FOUND"),
        EngineError::InvalidName(_) => bad("INVALID_ARG"),
        other => internal(other),
    }
}

fn require_post(method: &Method) -> Option<Response> {
    (method != Method::POST).then(|| method_not_allowed_or_options(method, "OPTIONS, POST"))
}

async fn topic_action(
    State(nsqd): Shared,
    method: Method,
    Path(action): Path<String>,
    params: Params,
) -> Response {
    let params = first_wins(params);
    if !["create", "delete", "empty", "pause", "unpause"].contains(&action.as_str()) {
        return not_found("NOT_FOUND").into_response();
    }
    if let Some(r) = require_post(&method) {
        return r;
    }
    // NSQ checks the name for create and empty; delete and (un)pause only look it up, so
    // an invalid name is simply not found.
    let topic = match params.get("topic") {
        None => return bad("MISSING_ARG_TOPIC").into_response(),
        Some(t) if !name::is_valid(t) => {
            return if action == "create" || action == "empty" {
                bad("INVALID_TOPIC").into_response()
            } else {
                not_found("TOPIC_NOT_FOUND").into_response()
            };
        }
        Some(t) => t.clone(),
    };
    let engine = &nsqd.engine;
    let result = match action.as_str() {
        "create" => engine.create_topic(&topic).map(|_| ()),
        "delete" => engine.delete_topic(&topic),
        "empty" => engine.empty_topic(&topic),
        "pause" => engine.set_topic_paused(&topic, true),
        _ => engine
            .set_topic_paused(&topic, false)
            .map(|()| nsqd.wake(&topic)),
    };
    match result {
        Ok(()) => Reply::Empty.into_response(),
        Err(e) => engine_error(e).into_response(),
    }
}

async fn channel_action(
    State(nsqd): Shared,
    method: Method,
    Path(action): Path<String>,
    params: Params,
) -> Response {
    let params = first_wins(params);
    if !["create", "delete", "empty", "pause", "unpause"].contains(&action.as_str()) {
        return not_found("NOT_FOUND").into_response();
    }
    if let Some(r) = require_post(&method) {
        return r;
    }
    let topic = match topic_param(&params, "INVALID_ARG_TOPIC") {
        Ok(t) => t,
        Err(r) => return r.into_response(),
    };
    let channel = match channel_param(&params, "INVALID_ARG_CHANNEL") {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let engine = &nsqd.engine;
    if engine.topic(&topic).is_none() {
        return not_found("TOPIC_NOT_FOUND").into_response();
    }
    let result = match action.as_str() {
        "create" => {
            let start = match params.get("start").map(|s| super::replay::parse_start(s)) {
                None => nsq_engine::ChannelStart::Default,
                Some(Ok(start)) => start,
                Some(Err(r)) => return r.into_response(),
            };
            // Creating an existing channel changes nothing, whatever `start` says.
            return super::replay::create_at(&nsqd, &topic, &channel, start).into_response();
        }
        "delete" => engine.delete_channel(&topic, &channel),
        "empty" => engine.empty_channel(&topic, &channel).map(|()| {
            // As in NSQ, its clients have nothing in flight any more: shown at once, and each
            // connection drops its own view when it next looks (woken here).
            for client in nsqd.clients.subscribed_to(&topic, &channel) {
                client
                    .in_flight_count
                    .store(0, std::sync::atomic::Ordering::Relaxed);
            }
            nsqd.wake(&topic)
        }),
        "pause" => engine.set_channel_paused(&topic, &channel, true),
        _ => engine
            .set_channel_paused(&topic, &channel, false)
            .map(|()| nsqd.wake(&topic)),
    };
    match result {
        Ok(()) => Reply::Empty.into_response(),
        Err(e) => engine_error(e).into_response(),
    }
}

/// A duration the way NSQ's `/config` shows it: Go nanoseconds.
fn nanos(d: std::time::Duration) -> serde_json::Value {
    serde_json::json!(d.as_nanos() as u64)
}

/// The value of one option under NSQ's config name, or `None` when there is no such option.
fn config_value(nsqd: &Nsqd, option: &str) -> Option<serde_json::Value> {
    use serde_json::json;
    let o = &nsqd.opts;
    Some(match option {
        "nsqlookupd_tcp_addresses" => json!(*nsqd
            .lookupd_addresses
            .read()
            .unwrap_or_else(|e| e.into_inner())),
        "log_level" => json!(super::log_level_number(
            &crate::logging::current_level().unwrap_or_else(|| o.log_level.clone())
        )),
        "log_prefix" => json!(o.log_prefix),
        "tcp_address" => json!(o.tcp_address.to_string()),
        "http_address" => json!(o.http_address.to_string()),
        "broadcast_address" => json!(o.broadcast_address),
        "broadcast_tcp_port" => json!(o.broadcast_tcp_port()),
        "broadcast_http_port" => json!(o.broadcast_http_port()),
        "data_path" => json!(o.data_path.display().to_string()),
        "id" => json!(o.node_id),
        "mem_queue_size" => json!(o.mem_queue_size),
        "max_bytes_per_file" => json!(o.max_bytes_per_file),
        "sync_every" => json!(o.sync_every),
        "sync_timeout" => nanos(o.sync_timeout),
        "msg_timeout" => nanos(o.msg_timeout),
        "max_msg_timeout" => nanos(o.max_msg_timeout),
        "max_msg_size" => json!(o.max_msg_size),
        "max_body_size" => json!(o.max_body_size),
        "max_req_timeout" => nanos(o.max_req_timeout),
        "max_rdy_count" => json!(o.max_rdy_count),
        "max_heartbeat_interval" => nanos(o.max_heartbeat_interval),
        "max_output_buffer_size" => json!(o.max_output_buffer_size),
        "max_output_buffer_timeout" => nanos(o.max_output_buffer_timeout),
        "min_output_buffer_timeout" => nanos(o.min_output_buffer_timeout),
        "output_buffer_timeout" => nanos(o.output_buffer_timeout),
        "max_channel_consumers" => json!(o.max_channel_consumers),
        "snappy" => json!(o.snappy),
        "deflate" => json!(o.deflate),
        "max_deflate_level" => json!(o.max_deflate_level),
        _ => return None,
    })
}

/// `GET /config/:opt`: strings as plain text, everything else as JSON, as NSQ answers.
async fn get_config(State(nsqd): Shared, Path(option): Path<String>) -> Reply {
    match config_value(&nsqd, &option) {
        Some(serde_json::Value::String(s)) => Reply::String(s),
        Some(v) => Reply::Json(v),
        None => bad("INVALID_OPTION"),
    }
}

/// `PUT /config/:opt`: NSQ lets `nsqlookupd_tcp_addresses` (a JSON list) and `log_level` (a
/// plain level name) change at run time; the answer is the new value, as `GET` shows it.
async fn put_config(State(nsqd): Shared, Path(option): Path<String>, body: Bytes) -> Reply {
    match option.as_str() {
        "nsqlookupd_tcp_addresses" => {
            let Ok(addresses) = serde_json::from_slice::<Vec<String>>(&body) else {
                return bad("INVALID_VALUE");
            };
            *nsqd
                .lookupd_addresses
                .write()
                .unwrap_or_else(|e| e.into_inner()) = addresses.clone();
            Reply::Json(serde_json::json!(addresses))
        }
        "log_level" => {
            let level = String::from_utf8_lossy(&body);
            match crate::logging::set_level(&level) {
                Some(()) => {
                    tracing::info!("log level set to {}", level.trim());
                    Reply::Json(serde_json::json!(super::log_level_number(level.trim())))
                }
                None => bad("INVALID_VALUE"),
            }
        }
        _ => bad("INVALID_OPTION"),
    }
}
