//! Step 2: the VM's own cgroup, `den/<id>-<pid>` (one per den-vmm, so cleaning up after one
//! never touches the next of the same VM), with limits for memory (the guest's plus den-vmm's
//! own), CPU time and processes. cgroup v2 when the hierarchy root is one, else the v1
//! `memory`, `cpu` and `pids` hierarchies that exist (memory is required).

use crate::spec::JailSpec;
use crate::JailError;
use std::path::{Path, PathBuf};

/// The folder all VMs' cgroups live in, in every hierarchy.
pub const PARENT: &str = "den";

/// One hierarchy the VM's cgroup is made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified (v2) hierarchy at this path.
    V2(PathBuf),
    /// A v1 hierarchy with this controller, at this path.
    V1(&'static str, PathBuf),
}

impl Hierarchy {
    /// Where the hierarchy is mounted.
    pub fn path(&self) -> &Path {
        match self {
            Hierarchy::V2(p) | Hierarchy::V1(_, p) => p,
        }
    }

    /// The folder VMs' cgroups are made in.
    pub fn parent(&self) -> PathBuf {
        self.path().join(PARENT)
    }

    /// Whether it can limit memory (v2, or v1 `memory`).
    fn limits_memory(&self) -> bool {
        matches!(self, Hierarchy::V2(_) | Hierarchy::V1("memory", _))
    }
}

/// Whether the hierarchies under `root` can limit a VM's memory, which [`join`] requires.
pub fn can_limit_memory(root: &Path) -> bool {
    hierarchies(root).iter().any(Hierarchy::limits_memory)
}

/// The hierarchies under `root` (usually `/sys/fs/cgroup`).
pub fn hierarchies(root: &Path) -> Vec<Hierarchy> {
    if root.join("cgroup.controllers").is_file() {
        return vec![Hierarchy::V2(root.to_path_buf())];
    }
    ["memory", "cpu", "pids"]
        .into_iter()
        .map(|c| (c, root.join(c)))
        .filter(|(_, p)| p.join("cgroup.procs").is_file())
        .map(|(c, p)| Hierarchy::V1(c, p))
        .collect()
}

fn write(path: &Path, value: &str) -> Result<(), JailError> {
    std::fs::write(path, value).map_err(JailError::io(format!("write `{value}` to {}", path.display())))
}

/// The pids in a cgroup folder (empty if it does not exist).
pub fn processes(group: &Path) -> Vec<i32> {
    std::fs::read_to_string(group.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// The name of the cgroup of den-vmm `pid` of VM `id`.
pub fn group_name(id: &str, pid: u32) -> String {
    format!("{id}-{pid}")
}

/// Whether `name` is a group [`group_name`] makes for VM `id`.
fn is_group_of(name: &str, id: &str) -> bool {
    name.strip_prefix(id)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// The VM id of a group [`group_name`] makes, or `None` if `name` is not one.
pub fn vm_of(name: &str) -> Option<&str> {
    name.rsplit_once('-').map(|(id, _)| id).filter(|id| crate::spec::valid_id(id) && is_group_of(name, id))
}

/// Whether `name` is a group [`group_name`] makes (for any VM).
pub fn valid_group(name: &str) -> bool {
    vm_of(name).is_some()
}

/// Makes the group fresh: the groups of earlier den-vmm processes of the same VM must be empty
/// (else one still runs, or something it started) and are removed.
fn fresh(parent: &Path, id: &str, group: &Path) -> Result<(), JailError> {
    if let Ok(entries) = std::fs::read_dir(parent) {
        for old in entries.flatten().filter(|e| e.file_name().to_str().is_some_and(|n| is_group_of(n, id))) {
            let left = processes(&old.path());
            if !left.is_empty() {
                return Err(JailError::Invalid(format!(
                    "cgroup {} still holds processes {left:?}: a den-vmm of this VM runs; stop it first",
                    old.path().display()
                )));
            }
            let _ = std::fs::remove_dir(old.path());
        }
    }
    std::fs::create_dir_all(group).map_err(JailError::io(format!("create cgroup {}", group.display())))
}

/// Creates the VM's cgroup in every hierarchy, sets its limits and moves this process in.
pub fn join(spec: &JailSpec) -> Result<(), JailError> {
    let found = hierarchies(&spec.cgroup_root);
    if !found.iter().any(Hierarchy::limits_memory) {
        return Err(JailError::Invalid(format!(
            "no cgroup memory controller under {} (cgroup v2, or v1 `memory`): cannot limit the VM's memory; \
             mount cgroup2 there",
            spec.cgroup_root.display()
        )));
    }
    let memory = (spec.memory_mib << 20).to_string();
    let pid = std::process::id().to_string();
    let name = group_name(&spec.id, std::process::id());
    for h in &found {
        let group = h.parent().join(&name);
        if let Hierarchy::V2(root) = h {
            // Controllers must be enabled in each parent for the VM's group to have them.
            for parent in [root.clone(), h.parent()] {
                std::fs::create_dir_all(&parent).map_err(JailError::io(format!("create {}", parent.display())))?;
                write(&parent.join("cgroup.subtree_control"), "+memory +cpu +pids")?;
            }
        }
        // A `dend` removing the group of this VM's previous den-vmm may race with its making:
        // make it again if it vanished.
        let mut attempt = 0;
        while let Err(e) = make(spec, h, &group, &memory, &pid) {
            let _ = std::fs::remove_dir(&group);
            attempt += 1;
            let vanished =
                matches!(&e, JailError::Step { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
            if !vanished || attempt == 3 {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Makes the group fresh in one hierarchy, sets its limits and moves `pid` in.
fn make(spec: &JailSpec, h: &Hierarchy, group: &Path, memory: &str, pid: &str) -> Result<(), JailError> {
    fresh(&h.parent(), &spec.id, group)?;
    match h {
        Hierarchy::V2(_) => {
            write(&group.join("memory.max"), memory)?;
            if group.join("memory.swap.max").exists() {
                write(&group.join("memory.swap.max"), "0")?;
            }
            write(&group.join("cpu.max"), &format!("{} 100000", u64::from(spec.cpus) * 100_000))?;
            write(&group.join("pids.max"), &spec.pids.to_string())?;
        }
        Hierarchy::V1("memory", _) => {
            write(&group.join("memory.limit_in_bytes"), memory)?;
            // Without swap accounting the limit covers RAM only: keep the VM out of swap.
            if group.join("memory.memsw.limit_in_bytes").exists() {
                write(&group.join("memory.memsw.limit_in_bytes"), memory)?;
            } else if group.join("memory.swappiness").exists() {
                write(&group.join("memory.swappiness"), "0")?;
            }
        }
        Hierarchy::V1("cpu", _) => {
            write(&group.join("cpu.cfs_period_us"), "100000")?;
            write(&group.join("cpu.cfs_quota_us"), &(u64::from(spec.cpus) * 100_000).to_string())?;
        }
        Hierarchy::V1("pids", _) => write(&group.join("pids.max"), &spec.pids.to_string())?,
        Hierarchy::V1(..) => {}
    }
    write(&group.join("cgroup.procs"), pid)
}

/// Removes cgroup `name` (a [`group_name`]) under `root` once it holds no process (after
/// den-vmm ended); says which hierarchies still hold some.
pub fn remove(root: &Path, name: &str) -> Result<(), String> {
    if !valid_group(name) {
        return Err(format!("`{name}` is not a VM's cgroup"));
    }
    let mut busy = vec![];
    for h in hierarchies(root) {
        let group = h.parent().join(name);
        if !group.exists() {
            continue;
        }
        let left = processes(&group);
        if !left.is_empty() || std::fs::remove_dir(&group).is_err() {
            busy.push(format!("{} ({left:?})", group.display()));
        }
    }
    if busy.is_empty() {
        Ok(())
    } else {
        Err(format!("cgroups still in use: {}", busy.join(", ")))
    }
}

/// Kills every process in cgroup `name` (SIGKILL): what a den-vmm left behind when it ended, or
/// one whose launch failed.
pub fn kill_all(root: &Path, name: &str) {
    if !valid_group(name) {
        return;
    }
    for h in hierarchies(root) {
        let group = h.parent().join(name);
        // v2 kills the whole group at once, with no pid read and then signalled (which may
        // have been reused meanwhile).
        if matches!(h, Hierarchy::V2(_)) && std::fs::write(group.join("cgroup.kill"), "1").is_ok() {
            continue;
        }
        for pid in processes(&group) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_belong_to_one_vm() {
        assert_eq!(group_name("ab12", 77), "ab12-77");
        assert!(is_group_of("ab12-77", "ab12") && !is_group_of("ab12-7x", "ab12") && !is_group_of("ab12-", "ab12"));
        assert!(!is_group_of("a-1-123", "a"), "VM a-1's group is not VM a's");
        assert!(valid_group("a-1-123") && valid_group("ab12-77"));
        assert_eq!((vm_of("a-1-123"), vm_of("ab12-77"), vm_of("ab12")), (Some("a-1"), Some("ab12"), None));
        assert!(!valid_group("ab12") && !valid_group("../x-1") && !valid_group("-1") && !valid_group("cgroup.procs"));
    }
}
