//! One client connection of the Docker socket: each request is authorised (viewers read,
//! operators change), checked by the policy (reading the body where it matters, at most
//! [`MAX_BODY`]), and forwarded over the agent channel to dockerd's socket in the sandbox on one
//! upstream connection per client connection (HTTP/1.1 keep-alive both ways). Bodies stream
//! both ways without idle timeouts; a `101` answer (attach, exec, `h2c` sessions) hands both
//! connections over to a byte splice that passes half-closes through.

use super::endpoint::{classify, Endpoint};
use super::owners::{self, Access};
use super::policy::inspects_body;
use super::sandbox::GUEST_SOCKET;
use super::{reply, Body, Bridge};
use den_agent_proto::ForwardTarget;
use den_auth::Caller;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Largest request body the policy reads (container create bodies are a few KiB).
pub const MAX_BODY: usize = 4 << 20;
/// Largest answer kept for replay while the sandbox sleeps (`/_ping`, `/version`).
const MAX_CACHED: usize = 64 << 10;

/// The upstream connection of one client connection, made on its first request.
pub type Upstream = Arc<Mutex<Option<SendRequest<Body>>>>;

fn boxed<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> Box<dyn std::error::Error + Send + Sync> {
    e.into()
}

/// Answers one request from `caller` (or refuses it when the peer has no Den identity).
pub async fn handle(
    bridge: Arc<Bridge>,
    caller: Result<Caller, String>,
    upstream: Upstream,
    held: Option<Arc<super::Open>>,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let caller = match caller {
        Ok(c) => c,
        Err(why) => return reply::error(StatusCode::FORBIDDEN, &format!("den: {why}")),
    };
    let endpoint = classify(req.method().as_str(), req.uri().path());
    let what = format!("{} {}", req.method(), req.uri().path());
    let access = owners::access(req.method().as_str(), req.uri().path(), req.uri().query().unwrap_or(""));
    // Looking needs a viewer; changes, reading files and every upgrade (an attach types into a
    // container) an operator; what reaches everyone's objects an admin.
    let upgrade = req.headers().contains_key(hyper::header::UPGRADE) || req.uri().path().ends_with("/attach/ws");
    let need = owners::role_for(&access, matches!(*req.method(), Method::GET | Method::HEAD) && !upgrade);
    if !caller.has(need) {
        let why = if let Access::Everyone(why) = &access { format!(" ({why})") } else { String::new() };
        let msg = format!(
            "den: user `{}` may not do this with Docker: it needs the {} role{why}; an admin can grant it",
            caller.user,
            need.as_str()
        );
        return refused(&bridge, &caller, &what, "role", &msg);
    }
    if let Some(why) = super::endpoint::unacceptable(req.uri().path()) {
        return refused(&bridge, &caller, &what, "path", &format!("refused by Den's Docker policy: {why}"));
    }
    if let Some(why) = super::endpoint::unacceptable_body_type(req.headers()) {
        return refused(&bridge, &caller, &what, "body", &format!("refused by Den's Docker policy: {why}"));
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    let query = parts.uri.query().unwrap_or("").to_string();
    let labels = owners::labels_body(&endpoint);
    let (body, read): (Body, Option<hyper::body::Bytes>) = if inspects_body(&endpoint) || labels {
        match Limited::new(body, MAX_BODY).collect().await {
            Ok(c) => {
                let bytes = c.to_bytes();
                (Full::new(bytes.clone()).map_err(boxed).boxed(), Some(bytes))
            }
            Err(e) => {
                let msg = format!(
                    "refused by Den's Docker policy: the request body could not be read whole ({e}; at most {} MiB); \
                     the request was not forwarded",
                    MAX_BODY >> 20
                );
                return refused(&bridge, &caller, &what, "body", &msg);
            }
        }
    } else {
        (body.map_err(boxed).boxed(), None)
    };
    if let Err(r) = bridge.policy_for(&caller).check(&endpoint, &query, read.as_deref()) {
        return refused(&bridge, &caller, &what, r.rule, &r.message);
    }
    if endpoint == Endpoint::Commit && owners::changes_name_owner(&query) {
        let msg = format!(
            "refused by Den's Docker policy: a commit's `--change` may not set the `{}` label; Den sets it",
            owners::OWNER_LABEL
        );
        return refused(&bridge, &caller, &what, "body", &msg);
    }
    // Existing objects: their owner decides, and what was decided on is what is forwarded (by
    // id); new ones get their owner.
    let mut reached = match &access {
        Access::Change(objects) | Access::ReadFiles(objects) | Access::Make(objects) => objects.clone(),
        Access::Look | Access::Everyone(_) => vec![],
    };
    match (&endpoint, &read) {
        (Endpoint::ContainerCreate, Some(bytes)) => reached.extend(owners::reached_by_create(bytes)),
        (Endpoint::NetworkConnect, Some(bytes)) => reached.extend(owners::reached_by_connect(bytes)),
        _ => {}
    }
    let mut pins = Vec::new();
    for object in &reached {
        match bridge.may_touch(&caller, object).await {
            Ok(Some(id)) if owners::pinned(object) => pins.push((object.clone(), id)),
            Ok(Some(_)) => {}
            // Not there yet: for a non-admin, a named volume a create mounts is made now as
            // theirs; any other container, exec or network could appear as someone else's
            // before dockerd looks, so it must exist first.
            Ok(None) if caller.is_admin() => {}
            Ok(None) => match object {
                owners::Object::Volume(v) if endpoint == Endpoint::ContainerCreate => {
                    if let Err(why) = bridge.make_volume(&caller, v).await {
                        return refused(&bridge, &caller, &what, "owner", &why);
                    }
                }
                o if owners::pinned(o) || matches!(o, owners::Object::Exec(_)) => {
                    let msg =
                        format!("den: no such {}; `docker ps -a` and `docker network ls` list them", o.describe());
                    return reply::error(StatusCode::NOT_FOUND, &msg);
                }
                _ => {}
            },
            Err(why) => return refused(&bridge, &caller, &what, "owner", &why),
        }
    }
    // Tags this request may set are its own until its answer ends (`pending`).
    let tags_held = bridge.pending.hold(&caller.user);
    let mut sets: Vec<String> =
        reached.iter().filter_map(|o| if let owners::Object::Tag(t) = o { Some(t.clone()) } else { None }).collect();
    sets.extend(owners::pulled(parts.method.as_str(), parts.uri.path(), &query));
    if let Err(why) = tags_held.add(&sets) {
        return refused(&bridge, &caller, &what, "owner", &why);
    }
    let tags_held = Arc::new(tags_held);
    // What is forwarded: decided objects by id, and the owner label on builds and commits.
    let pin_here = !pins.is_empty() && !owners::removes_link(parts.method.as_str(), &query);
    if pin_here || matches!(endpoint, Endpoint::Commit | Endpoint::Build) {
        let mut path = parts.uri.path().to_string();
        let mut new_query = query.clone();
        if pin_here {
            path = owners::pin_path(&path, &pins);
            new_query = owners::pin_query(&new_query, &pins);
        }
        match endpoint {
            Endpoint::Commit => new_query = owners::label_commit_query(&new_query, &caller.user),
            Endpoint::Build => match owners::label_build_query(&new_query, &caller.user) {
                Ok(q) => new_query = q,
                Err(e) => {
                    return refused(&bridge, &caller, &what, "body", &format!("refused by Den's Docker policy: {e}"))
                }
            },
            _ => {}
        }
        let uri = if new_query.is_empty() { path } else { format!("{path}?{new_query}") };
        match uri.parse() {
            Ok(u) => parts.uri = u,
            Err(e) => return refused(&bridge, &caller, &what, "path", &format!("den: the request's path: {e}")),
        }
    }
    let body = match &read {
        Some(bytes) => {
            let bytes = owners::pin_body(bytes, &pins).unwrap_or_else(|| bytes.to_vec());
            let bytes = if labels {
                match owners::label_body(&bytes, &caller.user) {
                    Ok(b) => b,
                    Err(e) => {
                        let msg = format!("refused by Den's Docker policy: {e}");
                        return refused(&bridge, &caller, &what, "body", &msg);
                    }
                }
            } else {
                bytes
            };
            parts.headers.insert(hyper::header::CONTENT_LENGTH, hyper::header::HeaderValue::from(bytes.len()));
            // A commit may come with no body; dockerd wants JSON named as such once there is one.
            parts
                .headers
                .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
            Full::new(hyper::body::Bytes::from(bytes)).map_err(boxed).boxed()
        }
        None => body,
    };
    // An archive a non-admin loads may not move a tag of someone else's image; anyone's load
    // holds the tags it names (`load`, `pending`).
    let load_verdict: Verdict = Default::default();
    let body = if endpoint == Endpoint::ImageLoad {
        checked_load(bridge.clone(), caller.clone(), body, load_verdict.clone(), tags_held.clone())
    } else {
        body
    };
    let cache_key = cache_key(&parts.method, &endpoint);
    if bridge.asleep() {
        if let Some(resp) = asleep_answer(&bridge, cache_key, &endpoint, &query) {
            tracing::info!(user = %caller.user, request = %what, decision = "answered while the sandbox sleeps", "docker");
            return resp;
        }
    }
    tracing::info!(user = %caller.user, request = %what, decision = "allowed", "docker");
    bridge.touch();
    let forwarded = forward(&bridge, &upstream, Request::from_parts(parts, body)).await;
    if let Some(why) = load_verdict.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return refused(&bridge, &caller, &what, "owner", &format!("den: nothing was loaded: {why}"));
    }
    let mut resp = match forwarded {
        Ok(r) => r,
        Err(e) => return reply::error(StatusCode::SERVICE_UNAVAILABLE, &format!("den: the Docker sandbox: {e}")),
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        // An upgraded connection stays counted (for the resource saver and its user's cap) until
        // its splice ends.
        let open = held;
        tokio::spawn(async move {
            if let (Ok(client), Ok(guest)) = tokio::join!(client_upgrade, upstream_upgrade) {
                let (mut client, mut guest) = (TokioIo::new(client), TokioIo::new(guest));
                let _ = tokio::io::copy_bidirectional(&mut client, &mut guest).await;
            }
            drop(open);
        });
    }
    if let (Some(key), true) = (cache_key, resp.status().is_success()) {
        // Small answers, kept to be replayed while the sandbox sleeps.
        let (head, body) = resp.into_parts();
        let whole = tokio::time::timeout(super::upstream::JSON_WAIT, Limited::new(body, MAX_CACHED).collect()).await;
        let bytes = match whole {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => {
                let msg = format!("den: dockerd's answer broke off or is larger than {} KiB: {e}", MAX_CACHED >> 10);
                return reply::error(StatusCode::BAD_GATEWAY, &msg);
            }
            Err(_) => {
                let msg =
                    format!("den: dockerd did not finish its answer within {} s", super::upstream::JSON_WAIT.as_secs());
                return reply::error(StatusCode::GATEWAY_TIMEOUT, &msg);
            }
        };
        bridge.cache.put(key, head.status, head.headers.clone(), bytes.clone());
        return Response::from_parts(head, Full::new(bytes).map_err(boxed).boxed());
    }
    let stop = bridge.stopping.subscribe();
    resp.map(|b| end_on_shutdown(b, stop, tags_held))
}

/// Why a checked load was cut off, when it was.
type Verdict = Arc<std::sync::Mutex<Option<String>>>;

/// An image archive's body, read on its way to dockerd ([`super::load::TarWatch`]). The
/// latest frame is always held back until the next one has been read, so the body's end
/// reaches dockerd (which reads the tags only once the whole body is in) only after every check.
/// Each tag named is decided on ([`Bridge::may_touch`], when `decide`: a non-admin) and held
/// ([`super::pending`]) as soon as the file naming it has passed, and all of them are decided on
/// once more at the end (a tag that named nothing at first may name someone's image by then).
/// A refusal lets the held tags go, breaks the body off (dockerd loads nothing) and leaves its
/// reason in `verdict`; the rest of the upload is read and dropped for up to [`DRAIN`], so the
/// client gets the answer rather than a broken pipe. For an admin an archive Den cannot read is
/// passed on unwatched.
fn checked_load(
    bridge: Arc<Bridge>,
    caller: Caller,
    body: Body,
    verdict: Verdict,
    held: Arc<super::pending::Held>,
) -> Body {
    let decide = !caller.is_admin();
    let start = LoadState { body, watch: Some(super::load::TarWatch::default()), held_back: None, ended: false };
    let frames = futures_util::stream::unfold(Some(start), move |state| {
        let (bridge, caller, verdict, held) = (bridge.clone(), caller.clone(), verdict.clone(), held.clone());
        async move {
            let mut st = state.filter(|s| !s.ended)?;
            loop {
                let refusal = match st.body.frame().await {
                    Some(Err(e)) => return Some((Err(e), None)),
                    None => {
                        let last = match st.watch.as_ref() {
                            Some(w) if decide => w.finish().map_err(|e| e.to_string()).map(|()| w.seen().to_vec()),
                            _ => Ok(vec![]),
                        };
                        let checked = match last {
                            Ok(tags) => decide_and_hold(&bridge, &caller, &held, decide, tags).await,
                            Err(e) => Err(e),
                        };
                        match checked {
                            Err(why) => why,
                            Ok(()) => {
                                st.ended = true;
                                let frame = st.held_back.take()?;
                                return Some((Ok(frame), Some(st)));
                            }
                        }
                    }
                    Some(Ok(frame)) => {
                        let fed = match (st.watch.as_mut(), frame.data_ref()) {
                            (Some(w), Some(data)) => w.feed(data).map(|()| w.take_tags()),
                            _ => Ok(vec![]),
                        };
                        let checked = match fed {
                            Ok(tags) => decide_and_hold(&bridge, &caller, &held, decide, tags).await,
                            Err(e) if decide => Err(e.to_string()),
                            Err(_) => {
                                st.watch = None;
                                Ok(())
                            }
                        };
                        match checked {
                            Err(why) => why,
                            Ok(()) => match st.held_back.replace(frame) {
                                Some(out) => return Some((Ok(out), Some(st))),
                                None => continue,
                            },
                        }
                    }
                };
                held.clear();
                *verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(refusal.clone());
                let drain = async { while let Some(Ok(_)) = st.body.frame().await {} };
                let _ = tokio::time::timeout(DRAIN, drain).await;
                return Some((Err(boxed(refusal)), None));
            }
        }
    });
    http_body_util::StreamBody::new(frames).boxed()
}

/// Decides on `tags` (when `decide`) and then holds them for this request.
async fn decide_and_hold(
    bridge: &Arc<Bridge>,
    caller: &Caller,
    held: &super::pending::Held,
    decide: bool,
    tags: Vec<String>,
) -> Result<(), String> {
    for tag in tags.iter().filter(|_| decide) {
        bridge.may_touch(caller, &owners::Object::Tag(tag.clone())).await?;
    }
    held.add(&tags)
}

/// How long the rest of a refused upload is read (and dropped) so its client gets the answer.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(60);

/// Where a checked load is.
struct LoadState {
    body: Body,
    /// `None` once an admin's archive could not be read.
    watch: Option<super::load::TarWatch>,
    /// The latest frame, forwarded once the next one has been checked.
    held_back: Option<hyper::body::Frame<hyper::body::Bytes>>,
    ended: bool,
}

/// `body`, ended early (cleanly, as if dockerd had finished it) when dend shuts down; the
/// request's held tags ([`super::pending`]) go when it ends.
fn end_on_shutdown(body: Incoming, stop: tokio::sync::watch::Receiver<bool>, held: Arc<super::pending::Held>) -> Body {
    let frames = futures_util::stream::unfold((body, stop, held), |(mut body, mut stop, held)| async move {
        let frame = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => None,
            frame = body.frame() => frame,
        };
        frame.map(|f| (f.map_err(boxed), (body, stop, held)))
    });
    http_body_util::StreamBody::new(frames).boxed()
}

/// The cache key of answers worth replaying while the sandbox sleeps.
fn cache_key(method: &Method, endpoint: &Endpoint) -> Option<&'static str> {
    match (method, endpoint) {
        (&Method::GET, Endpoint::Ping) => Some("GET /_ping"),
        (&Method::HEAD, Endpoint::Ping) => Some("HEAD /_ping"),
        (&Method::GET, Endpoint::Version) => Some("GET /version"),
        _ => None,
    }
}

/// What the sleeping sandbox would say: its last `/_ping` and `/version`, and no running
/// containers. `None`: the request needs the sandbox awake.
fn asleep_answer(
    bridge: &Bridge,
    key: Option<&'static str>,
    endpoint: &Endpoint,
    query: &str,
) -> Option<Response<Body>> {
    let (status, headers, body) = match (key, endpoint) {
        (Some(key), _) => bridge.cache.get(key)?,
        (None, Endpoint::ContainerList) if !super::saver::lists_all(query) => {
            let (_, mut headers, _) = bridge.cache.get("GET /_ping").or_else(|| bridge.cache.get("HEAD /_ping"))?;
            headers.remove(hyper::header::CONTENT_LENGTH);
            headers.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
            (StatusCode::OK, headers, hyper::body::Bytes::from_static(b"[]\n"))
        }
        _ => return None,
    };
    let mut resp = Response::new(Full::new(body).map_err(boxed).boxed());
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    Some(resp)
}

fn refused(bridge: &Bridge, caller: &Caller, what: &str, rule: &str, message: &str) -> Response<Body> {
    tracing::warn!(user = %caller.user, request = %what, decision = "refused", rule, "docker");
    bridge.den.event(&caller.user, "docker.refused", bridge.sandbox.name(), &format!("{what}: {rule}"));
    reply::error(StatusCode::FORBIDDEN, message)
}

/// Sends `req` to dockerd on this client connection's upstream connection (made first when
/// there is none or the last one closed).
async fn forward(bridge: &Arc<Bridge>, upstream: &Upstream, req: Request<Body>) -> Result<Response<Incoming>, String> {
    let mut slot = upstream.lock().await;
    if slot.as_ref().is_none_or(|s| s.is_closed()) {
        let agent = bridge.sandbox.ready(&bridge.den).await?;
        let io = agent
            .forward_io(ForwardTarget::Unix { path: GUEST_SOCKET.into() })
            .await
            .map_err(|e| format!("cannot reach dockerd's socket: {e}"))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("dockerd's socket: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%e, "docker upstream connection");
            }
        });
        *slot = Some(sender);
    }
    let Some(sender) = slot.as_mut() else { return Err("no upstream connection".into()) };
    sender.ready().await.map_err(|e| format!("dockerd's connection: {e}"))?;
    sender.send_request(req).await.map_err(|e| format!("dockerd did not answer: {e}"))
}
