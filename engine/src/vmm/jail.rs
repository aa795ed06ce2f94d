//! den-vmm in a jail: how the engine starts it through `den-jailer` (see that crate), which
//! uid each VM gets, and how a VM's cgroup goes away when its den-vmm ends.
//!
//! Each running VM gets its own uid, `uid_base + k`: the first free one from a start derived
//! from the VM's id, so a VM usually keeps its uid. "Free" means that no process runs as it and
//! this dend has not reserved it: a launch reserves its uid (under a lock, from the pick until
//! the reservation is made) until its den-vmm's cgroup is gone.

use super::LaunchSpec;
use crate::EngineError;
use den_jailer::Resource;
use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Memory den-vmm may use beyond its guest's (its own heap, threads, device buffers), in MiB,
/// plus [`OVERHEAD_PERCENT`] of the guest's (KVM's page tables and per-page arrays, charged to
/// the same cgroup, grow with it).
pub const OVERHEAD_MIB: u64 = 64;
/// See [`OVERHEAD_MIB`].
pub const OVERHEAD_PERCENT: u64 = 2;

/// The cgroup memory limit for a guest of `memory_mib`.
pub fn memory_limit_mib(memory_mib: u64) -> u64 {
    memory_mib + OVERHEAD_MIB + memory_mib * OVERHEAD_PERCENT / 100
}

/// How VMs on den-vmm are jailed, set once by `dend` at start ([`set_policy`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailPolicy {
    /// The den-jailer binary.
    pub jailer: PathBuf,
    /// The first uid (and gid) for VMs.
    pub uid_base: u32,
    /// How many uids from `uid_base` VMs may use (at least the most VMs that run at once).
    pub uids: u32,
    /// The cgroup hierarchy's root (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
}

impl JailPolicy {
    /// The policy with `den-jailer` found like den-vmm ([`binary`]) and `/sys/fs/cgroup`.
    pub fn new(uid_base: u32, uids: u32) -> JailPolicy {
        JailPolicy { jailer: binary(), uid_base, uids, cgroup_root: "/sys/fs/cgroup".into() }
    }

    /// Whether the host has a cgroup memory controller den-jailer can limit VMs with.
    pub fn can_limit_memory(&self) -> bool {
        den_jailer::cgroup::can_limit_memory(&self.cgroup_root)
    }

    /// Checks the uid range: above 65535 (no system or regular user), not wrapping, and not
    /// given to a user as subordinate ids (`/etc/subuid`, `/etc/subgid`), who could then run as
    /// a VM's uid and signal its den-vmm.
    pub fn validate(&self) -> Result<(), String> {
        if self.uid_base < 65_536 || self.uids == 0 || self.uid_base.checked_add(self.uids).is_none() {
            return Err(format!(
                "[vmm] jail uids {}..+{}: use a range above 65535 that does not wrap, e.g. jail_uid_base = 2000000000",
                self.uid_base, self.uids
            ));
        }
        for file in ["/etc/subuid", "/etc/subgid"] {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            if let Some(line) = overlapping_subids(&text, self.uid_base, self.uids) {
                return Err(format!(
                    "[vmm] jail uids {}..+{} overlap `{line}` in {file}: that user could act as a VM's den-vmm; \
                     choose another jail_uid_base",
                    self.uid_base, self.uids
                ));
            }
        }
        Ok(())
    }
}

static POLICY: OnceLock<Option<JailPolicy>> = OnceLock::new();
/// Held from picking a uid until it is reserved.
pub(crate) static PICKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
/// Uids of launched den-vmm processes, by their cgroup's name, until that cgroup is removed.
static RESERVED: std::sync::Mutex<std::collections::BTreeMap<String, u32>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn reserved() -> std::sync::MutexGuard<'static, std::collections::BTreeMap<String, u32>> {
    RESERVED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reserves `uid` for the den-vmm whose cgroup is `group` (see [`end_cgroup`]).
pub(crate) fn reserve(group: String, uid: u32) {
    reserved().insert(group, uid);
}

/// Sets how den-vmm is jailed (`None`: not jailed), once, before the first launch.
pub fn set_policy(policy: Option<JailPolicy>) -> Result<(), String> {
    if let Some(p) = &policy {
        p.validate()?;
    }
    POLICY.set(policy).map_err(|_| "the jail policy is already set".to_string())
}

/// The policy in force (`None` until set, or when den-vmm runs unjailed).
pub fn policy() -> Option<&'static JailPolicy> {
    POLICY.get().and_then(Option::as_ref)
}

/// The den-jailer binary: `$DEN_JAILER_BIN`, else `den-jailer` next to the running executable,
/// else `den-jailer` on `PATH`.
pub fn binary() -> PathBuf {
    super::companion("DEN_JAILER_BIN", "den-jailer")
}

/// The first line of a subuid/subgid file (`user:start:count`) whose range overlaps
/// `base..base+count`.
fn overlapping_subids(text: &str, base: u32, count: u32) -> Option<&str> {
    let (lo, hi) = (u64::from(base), u64::from(base) + u64::from(count));
    text.lines().filter(|l| !l.trim_start().starts_with('#')).find(|l| {
        let mut f = l.trim().split(':').skip(1).map(|n| n.parse::<u64>());
        matches!((f.next(), f.next()), (Some(Ok(s)), Some(Ok(n))) if s < hi && lo < s + n)
    })
}

/// The real uids of all processes.
fn uids_in_use() -> HashSet<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return HashSet::new() };
    dir.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())))
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The first uid of `policy`'s range that no process runs as, from a start derived from `id`.
pub fn pick_uid(policy: &JailPolicy, id: &str) -> Result<u32, EngineError> {
    let mut used = uids_in_use();
    used.extend(reserved().values());
    let start = (den_net_util::fnv1a(id.bytes()) % u64::from(policy.uids)) as u32;
    (0..policy.uids).map(|k| policy.uid_base + (start + k) % policy.uids).find(|uid| !used.contains(uid)).ok_or_else(
        || {
            EngineError::Startup(format!(
                "all {} jail uids from {} are in use: raise [vmm] jail_uids",
                policy.uids, policy.uid_base
            ))
        },
    )
}

/// den-vmm's arguments naming handed-over descriptors, and those descriptors as den-jailer's
/// `--fd` values, in order. `kvm_kind` is what the host's `/dev/kvm` runs.
pub fn args(spec: &LaunchSpec, kvm_kind: &str) -> Result<(Vec<String>, Vec<OsString>), EngineError> {
    let mut fds: Vec<Resource> = Vec::new();
    let argv = super::boot_args(spec, Some(kvm_kind), &mut |r| {
        fds.push(r);
        den_jailer::spec::fd_for(fds.len() - 1).into()
    });
    let fds = fds.iter().map(resource_arg).collect::<Result<_, _>>()?;
    Ok((fds, argv))
}

/// A resource as den-jailer's `--fd` value.
fn resource_arg(r: &Resource) -> Result<String, EngineError> {
    let path = |kind: &str, p: &Path| {
        p.to_str()
            .map(|s| format!("{kind}:{s}"))
            .ok_or_else(|| EngineError::Startup(format!("{}: not UTF-8, which den-jailer cannot take", p.display())))
    };
    match r {
        Resource::Kvm(p) => path("kvm", p),
        Resource::ReadOnly(p) => path("ro", p),
        Resource::ReadWrite(p) => path("rw", p),
        Resource::Listen(p) => path("listen", p),
        Resource::Connect(p) => path("connect", p),
        Resource::Tap(name) => Ok(format!("tap:{name}")),
    }
}

/// The jail cgroup (`<id>-<pid>`) process `pid` is in (read while it lives).
pub fn cgroup_of(pid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let path = l.splitn(3, ':').nth(2)?;
        let name = path.strip_prefix(&format!("/{}/", den_jailer::cgroup::PARENT))?;
        den_jailer::cgroup::valid_group(name).then(|| name.to_string())
    })
}

fn cgroup_root() -> PathBuf {
    policy().map(|p| p.cgroup_root.clone()).unwrap_or_else(|| "/sys/fs/cgroup".into())
}

/// Kills what is in cgroup `name` and removes it, trying for up to 5 s.
async fn empty_and_remove(root: &Path, name: &str) -> Result<(), String> {
    let mut last = Ok(());
    for _ in 0..50 {
        den_jailer::cgroup::kill_all(root, name);
        last = den_jailer::cgroup::remove(root, name);
        if last.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    last
}

/// After a jailed den-vmm ended: kills what is left in its cgroup `name` (nothing, unless it
/// managed to start a process), removes the cgroup and frees its uid. Logs what could not be
/// removed (the uid then stays reserved).
pub async fn end_cgroup(name: &str) {
    match empty_and_remove(&cgroup_root(), name).await {
        Ok(()) => {
            reserved().remove(name);
        }
        Err(e) => tracing::warn!(cgroup = name, %e, "cannot remove a jailed den-vmm's cgroup"),
    }
}

/// At start, before any launch: kills and removes the jail cgroups of this dend's VMs (`vms`:
/// each VM's id and the pid of its den-vmm if it still runs) that do not hold that den-vmm:
/// what den-vmm processes that ended while dend was away left, and jailers of starts cut
/// short. Groups of VMs `vms` does not name (another dend's, on the same host) are left alone.
/// Returns the names removed.
pub async fn sweep_cgroups(vms: &[(String, Option<i32>)]) -> Vec<String> {
    let root = cgroup_root();
    let mut swept = vec![];
    for h in den_jailer::cgroup::hierarchies(&root) {
        let Ok(entries) = std::fs::read_dir(h.parent()) else { continue };
        for e in entries.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else { continue };
            let Some(id) = den_jailer::cgroup::vm_of(&name) else { continue };
            if swept.contains(&name) {
                continue;
            }
            let Some((_, live)) = vms.iter().find(|(vm, _)| vm == id) else { continue };
            if live.is_some_and(|pid| den_jailer::cgroup::processes(&e.path()).contains(&pid)) {
                continue;
            }
            if let Err(e) = empty_and_remove(&root, &name).await {
                tracing::warn!(cgroup = name, %e, "cannot remove a stale jail cgroup");
            }
            swept.push(name);
        }
    }
    swept
}

/// `[vmm]` in den.toml: whether and how den-vmm is jailed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmmConfig {
    /// Start every den-vmm through den-jailer (the default). Off only to find out whether the
    /// jail is what breaks something.
    pub jail: bool,
    /// The first uid (and gid) for jailed den-vmm processes.
    pub jail_uid_base: u32,
    /// How many uids from `jail_uid_base` (one per running VM).
    pub jail_uids: u32,
}

impl Default for VmmConfig {
    fn default() -> VmmConfig {
        VmmConfig { jail: true, jail_uid_base: 2_000_000_000, jail_uids: 65_536 }
    }
}

impl VmmConfig {
    /// The policy this section asks for (`None`: unjailed).
    pub fn policy(&self) -> Option<JailPolicy> {
        self.jail.then(|| JailPolicy::new(self.jail_uid_base, self.jail_uids))
    }

    /// Checks the section.
    pub fn check(&self) -> Result<(), String> {
        self.policy().map_or(Ok(()), |p| p.validate())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_id_ranges_that_overlap_are_found() {
        let text = "alice:100000:65536\nbob:2000000100:10\n";
        assert_eq!(overlapping_subids(text, 2_000_000_000, 65_536), Some("bob:2000000100:10"));
        assert_eq!(overlapping_subids(text, 2_000_000_000, 100), None);
        assert_eq!(overlapping_subids(text, 165_535, 10), Some("alice:100000:65536"));
        assert_eq!(overlapping_subids(text, 165_536, 10), None);
        assert_eq!(overlapping_subids("junk\n#x:1:2\n", 1, 10), None);
        assert_eq!(memory_limit_mib(1024), 1024 + 64 + 20);
    }

    #[test]
    fn a_reserved_uid_is_not_picked_again_until_released() {
        let policy = JailPolicy::new(3_000_000_000, 4);
        let first = pick_uid(&policy, "vm-a").unwrap();
        assert_eq!(pick_uid(&policy, "vm-a").unwrap(), first, "a VM keeps its uid when it is free");
        reserve("vm-a-100".into(), first);
        let second = pick_uid(&policy, "vm-a").unwrap();
        assert_ne!(second, first);
        for (i, g) in ["vm-b-1", "vm-c-1", "vm-d-1"].iter().enumerate() {
            reserve(g.to_string(), 3_000_000_000 + ((first - 3_000_000_000 + 1 + i as u32) % 4));
        }
        let e = pick_uid(&policy, "vm-e").unwrap_err().to_string();
        assert!(e.contains("raise [vmm] jail_uids"), "{e}");
        reserved().remove("vm-c-1");
        assert!(pick_uid(&policy, "vm-e").is_ok());
        for g in ["vm-a-100", "vm-b-1", "vm-d-1"] {
            reserved().remove(g);
        }
    }
}
