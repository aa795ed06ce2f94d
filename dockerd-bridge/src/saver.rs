//! The resource saver, like Docker Desktop's: the sandbox stops after `idle_stop_secs` with no
//! client connected, no request in that time and no running container. While it is stopped,
//! `docker version` and `docker ps` are answered from what dockerd said last (`/_ping`,
//! `/version`) and from the fact that nothing runs (an empty list), so they stay quick and do
//! not wake it; any other request wakes it.

use super::{upstream, Bridge};
use hyper::body::Bytes;
use hyper::{HeaderMap, StatusCode};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// dockerd's last answers that can be replayed while the sandbox sleeps, by endpoint; kept in
/// a file too, so a restarted dend can answer for a sandbox that is still asleep.
#[derive(Default)]
pub struct Cache {
    answers: Mutex<HashMap<String, (StatusCode, HeaderMap, Bytes)>>,
    file: Option<PathBuf>,
}

/// One answer as stored in the file.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Cache {
    /// A cache kept in `file` (loaded from it when it exists).
    pub fn in_file(file: PathBuf) -> Cache {
        let stored: HashMap<String, Stored> =
            std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let answers = stored
            .into_iter()
            .filter_map(|(k, s)| {
                let status = StatusCode::from_u16(s.status).ok()?;
                let mut headers = HeaderMap::new();
                for (name, value) in s.headers {
                    headers.append(hyper::header::HeaderName::try_from(name).ok()?, value.parse().ok()?);
                }
                Some((k, (status, headers, Bytes::from(s.body))))
            })
            .collect();
        Cache { answers: Mutex::new(answers), file: Some(file) }
    }

    /// Remembers an answer (text bodies only).
    pub fn put(&self, key: &str, status: StatusCode, headers: HeaderMap, body: Bytes) {
        let mut answers = self.answers.lock().unwrap_or_else(|p| p.into_inner());
        // The same answer again (only its Date differs) is not written again: `/_ping` is hot.
        let but_date = |h: &HeaderMap| {
            h.iter().filter(|(n, _)| *n != hyper::header::DATE).map(|(n, v)| (n.clone(), v.clone())).collect::<Vec<_>>()
        };
        let same =
            answers.get(key).is_some_and(|(s, h, b)| *s == status && *b == body && but_date(h) == but_date(&headers));
        answers.insert(key.to_string(), (status, headers, body));
        let Some(file) = self.file.as_ref().filter(|_| !same) else { return };
        let stored: HashMap<&String, Stored> = answers
            .iter()
            .map(|(k, (st, h, b))| {
                let headers =
                    h.iter().filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_string()))).collect();
                (k, Stored { status: st.as_u16(), headers, body: String::from_utf8_lossy(b).into_owned() })
            })
            .collect();
        if let Ok(json) = serde_json::to_vec(&stored) {
            let tmp = file.with_extension("tmp");
            if std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, file)).is_err() {
                tracing::debug!(file = %file.display(), "cannot keep dockerd's answers");
            }
        }
    }

    /// A remembered answer.
    pub fn get(&self, key: &str) -> Option<(StatusCode, HeaderMap, Bytes)> {
        self.answers.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned()
    }
}

/// Whether a `GET /containers/json` query asks for stopped containers too (`all=1|true`).
pub fn lists_all(query: &str) -> bool {
    den_net_util::url::pairs(query).any(|p| p.key == "all" && matches!(p.value.as_str(), "1" | "true" | "True"))
}

/// Stops the sandbox once it has been idle long enough; runs until the process ends.
pub async fn run(bridge: Arc<Bridge>, idle: Duration) {
    if idle.is_zero() {
        return;
    }
    let every = (idle / 3).clamp(Duration::from_secs(1), Duration::from_secs(10));
    loop {
        tokio::time::sleep(every).await;
        if bridge.connections() > 0 || bridge.idle_for() < idle {
            continue;
        }
        let Some(agent) = bridge.running_agent().await else { continue };
        match upstream::get_json(&agent, "/containers/json").await {
            Ok(list) if list.as_array().is_some_and(Vec::is_empty) => {}
            _ => continue,
        }
        match bridge.sandbox.stop_if_idle(&bridge.den, || bridge.connections() == 0 && bridge.idle_for() >= idle).await
        {
            Ok(true) => {
                tracing::info!(vm = bridge.sandbox.name(), "docker: the sandbox stopped after being idle");
                bridge.den.event("dend", "docker.sandbox_idle_stop", bridge.sandbox.name(), &format!("idle {idle:?}"));
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(%e, "docker: stopping the idle sandbox"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_all_is_told_apart() {
        assert!(lists_all("all=1") && lists_all("limit=5&all=true"));
        assert!(!lists_all("") && !lists_all("all=0") && !lists_all("filters=%7B%7D"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("answers.json");
        let c = Cache::in_file(file.clone());
        let mut h = HeaderMap::new();
        h.insert("api-version", "1.41".parse().unwrap());
        c.put("GET /_ping", StatusCode::OK, h, Bytes::from_static(b"OK"));
        assert_eq!(c.get("GET /_ping").map(|a| a.2), Some(Bytes::from_static(b"OK")));
        assert!(c.get("GET /version").is_none());
        let again = Cache::in_file(file).get("GET /_ping").unwrap();
        assert_eq!(
            (again.0, again.1["api-version"].to_str().unwrap(), again.2),
            (StatusCode::OK, "1.41", Bytes::from_static(b"OK")),
            "kept across restarts"
        );
    }
}
