//! Tags that requests under way may still set (a build, a load, a tag, a commit, an import, a
//! pull, a removal). A tag is decided on the image it names when a request begins, but a build
//! that runs for minutes (or a load an uploader paces) tags only at its end: a tag that named
//! nothing at first could meanwhile name another user's image, which the end would take over.
//! So while one user's request holds a tag, everyone else's request that would set or remove
//! it is refused, admins' included, until the first one's answer has ended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The held tags: normal reference -> (user, hold id).
#[derive(Default)]
pub struct Pending {
    held: Mutex<HashMap<String, (String, u64)>>,
    next: AtomicU64,
}

/// What one request holds; dropping it lets the tags go.
pub struct Held {
    pending: Arc<Pending>,
    id: u64,
    user: String,
}

/// The one spelling of an image reference: `busybox`, `busybox:latest` and
/// `docker.io/library/busybox:latest` are one tag.
pub fn normal(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (name, tag) = match name.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name, None),
    };
    let (domain, path) = match name.split_once('/') {
        Some((d, p)) if d.contains('.') || d.contains(':') || d == "localhost" => (d, p.to_string()),
        _ => ("docker.io", name.to_string()),
    };
    let domain = if domain == "index.docker.io" { "docker.io" } else { domain };
    let path = if domain == "docker.io" && !path.contains('/') { format!("library/{path}") } else { path };
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(t), _) => out = format!("{out}:{t}"),
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out = format!("{out}@{d}");
    }
    out
}

impl Pending {
    /// A hold for `user` with nothing in it yet.
    pub fn hold(self: &Arc<Self>, user: &str) -> Held {
        Held { pending: self.clone(), id: self.next.fetch_add(1, Ordering::Relaxed), user: user.to_string() }
    }
}

impl Held {
    /// Adds `tags` to this hold, unless another user's request holds one of them (`Err` with
    /// the sentence for the person asking; nothing is added then).
    pub fn add(&self, tags: &[String]) -> Result<(), String> {
        let mut held = self.pending.held.lock().unwrap_or_else(|p| p.into_inner());
        for tag in tags {
            if let Some((user, id)) = held.get(&normal(tag)) {
                if *id != self.id && *user != self.user {
                    return Err(format!(
                        "den: the tag `{tag}` is being set by a request of `{user}` still under way (a build or a \
                         load); try again when it has ended"
                    ));
                }
            }
        }
        for tag in tags {
            held.entry(normal(tag)).or_insert_with(|| (self.user.clone(), self.id));
        }
        Ok(())
    }
}

impl Held {
    /// Lets every tag of this hold go (a refused request gives them back at once).
    pub fn clear(&self) {
        let mut held = self.pending.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|_, (_, id)| *id != self.id);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_users_tags_under_way_are_no_one_elses() {
        assert_eq!(normal("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normal("docker.io/library/busybox:latest"), "docker.io/library/busybox:latest");
        assert_eq!(normal("alice/app:2"), "docker.io/alice/app:2");
        assert_eq!(normal("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(normal("reg.example/a/b@sha256:ab"), "reg.example/a/b@sha256:ab");
        let p = Arc::new(Pending::default());
        let bob = p.hold("bob");
        bob.add(&["postgres:16".into()]).unwrap();
        let admin = p.hold("root");
        let e = admin.add(&["docker.io/library/postgres:16".into(), "other".into()]).unwrap_err();
        assert!(e.contains("`bob`"), "{e}");
        assert!(admin.add(&["other".into()]).is_ok(), "nothing was added by the refused call");
        assert!(p.hold("bob").add(&["postgres:16".into()]).is_ok(), "the same user's other request");
        bob.clear();
        assert!(admin.add(&["postgres:16".into()]).is_ok(), "let go when the first request was refused");
        drop(admin);
        let bob = p.hold("bob");
        assert!(bob.add(&["postgres:16".into()]).is_ok(), "and when it ended");
    }
}
