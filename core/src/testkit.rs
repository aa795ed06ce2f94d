//! Records for tests of the crates above (feature `testkit`, enabled by their dev-dependencies).

use crate::vm::{EngineChoice, EngineKind, Kind, RestartPolicy, VmRecord, VmSpec, VmState};

/// A stopped developer VM `name` (id `id-<name>`, image `base`, 1 vCPU, 256 MiB, QEMU, owner
/// `root`), for tests.
pub fn vm_record(name: &str) -> VmRecord {
    VmRecord {
        id: format!("id-{name}"),
        spec: VmSpec {
            name: name.into(),
            image: "base".into(),
            iso: None,
            firmware: None,
            shares: vec![],
            kind: Kind::Dev,
            engine: EngineChoice::Qemu,
            cpus: 1,
            memory_mib: 256,
            restart: RestartPolicy::Never,
            cmdline_extra: String::new(),
            disk_mib: None,
            data_disk_mib: None,
            autostart: false,
            start_order: 0,
            first_boot: Default::default(),
            nics: vec![],
            ports: vec![],
        },
        nics: vec![],
        owner: "root".into(),
        state: VmState::Stopped,
        running: None,
        engine: EngineKind::Qemu,
        provisioned: false,
        created: 1,
        updated: 1,
    }
}
