//! The Docker sandbox on den-vmm, through dend's Docker bridge, in the KVM lab (see
//! `den_tests::lab`): dend in the outer guest makes the sandbox (dockerd on Debian, its data disk,
//! a shared folder over virtio-fs) with `engine: auto`, which picks den-vmm, jailed; the real
//! `docker` CLI loads an image, runs a container with `-v <shared>:/src` that reads and writes the
//! host folder, and is refused a bind of a folder that is not shared. Prints the time from the
//! first `docker` call to dockerd answering.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use den_tests::docker::busybox_image;
use den_tests::images;
use den_tests::lab::{Lab, LabOptions};
use den_tests::lab_dev::{dend, lab_store, put_dend};
use std::time::Duration;

/// The longest the scenario may run before the lab counts as wedged: the sandbox's root disk is
/// copied and dockerd starts on CPUs that TCG emulates.
const SCRIPT_LIMIT: Duration = Duration::from_secs(360);

/// dend's configuration in the lab: a sandbox with one shared folder on the lab disk.
const CONFIG: &str = "[docker]\nmemory_mib = 1536\nshare = [\"/lab/disk/shared\"]\n";

const CHECKS: &str = r#"
mkdir -p /lab/disk/shared && echo from-the-lab > /lab/disk/shared/in.txt
export DOCKER_HOST=unix://$D/run/docker.sock DOCKER_CONFIG=/tmp/docker-config
docker() { /lab/disk/docker "$@"; }
t0=$(up)
i=0; until docker version --format '{{.Server.Os}}' > $D/dv.out 2>$D/dv.err; do
  i=$((i+1)); [ $i -lt 240 ] || { echo LAB-NO-DOCKERD; cat $D/dv.err; tail -30 $D/dend.log; den vm console docker-sandbox | tail -30; exit 8; }; sleep 1
done
t1=$(up)
echo "LAB-DOCKERD-MS=$(ms $t0 $t1)"
echo "LAB-SERVER-OS=$(cat $D/dv.out)"
echo "LAB-ENGINE=$(den --json vm inspect docker-sandbox | grep -o '"engine":"[a-z]*"' | head -1)"
PID=$(den --json vm inspect docker-sandbox | grep -o '"pid":[0-9]*' | cut -d: -f2)
echo "LAB-UID=$(awk '/^Uid:/{print $2}' /proc/$PID/status)"
docker load -i /lab/disk/busybox.tar | sed 's/^/LAB-LOAD=/'
echo "LAB-SEEN=$(docker run --rm -v /lab/disk/shared:/src busybox sh -c 'cat /src/in.txt; echo made > /src/out.txt')"
echo "LAB-WRITTEN=$(cat /lab/disk/shared/out.txt)"
docker run --rm -v /etc:/x busybox true 2>&1 | tr '\n' ' ' | sed 's/^/LAB-REFUSED=/'; echo
den vm stop docker-sandbox >/dev/null && echo LAB-SANDBOX-STOPPED
pidof den-vmm && echo LAB-LEFT-VMM || echo LAB-NO-VMM-LEFT
kill $(pidof dend)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lab_dend_runs_the_docker_sandbox_on_den_vmm() {
    let store = images::shared_store();
    let docker = images::build_builtin(&store, "docker");
    let folder = tempfile::tempdir().unwrap();
    lab_store(&store, &[&docker], &folder.path().join("store"));
    std::fs::write(folder.path().join("den.toml"), CONFIG).unwrap();
    busybox_image(&folder.path().join("busybox.tar")).unwrap();
    // The docker CLI is a static binary: it goes on the lab disk rather than over the agent.
    let cli = which("docker");
    std::fs::copy(&cli, folder.path().join("docker")).unwrap();
    let opts = LabOptions { memory_mib: 3584, disk_from: Some(folder.path().to_path_buf()) };
    Lab::run_with_retry_on(&opts, scenario).await;
}

/// Where `program` is on the host's PATH.
fn which(program: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

async fn scenario(lab: Lab) -> Result<(), String> {
    put_dend(&lab, &[]).await;
    let args = "--config /lab/disk/den.toml --listen off --ssh-listen off";
    let script = format!("{}{CHECKS}", dend(args));
    let out = lab.try_sh(&script, SCRIPT_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let field = |key: &str| Lab::field(&out, key);
    assert_eq!(field("LAB-SERVER-OS="), "linux", "dockerd answers through the bridge: {}", lab.describe(&out));
    assert_eq!(field("LAB-ENGINE="), "\"engine\":\"vmm\"", "the sandbox on den-vmm: {}", lab.describe(&out));
    let uid: u32 = field("LAB-UID=").parse().unwrap_or(0);
    assert!(uid >= 2_000_000_000, "the sandbox's den-vmm is jailed, not uid {uid}: {}", lab.describe(&out));
    assert!(field("LAB-LOAD=").contains("busybox:latest"), "{}", lab.describe(&out));
    // The shared folder, bound at its host path, read and written by a container.
    assert_eq!(field("LAB-SEEN="), "from-the-lab", "{}", lab.describe(&out));
    assert_eq!(field("LAB-WRITTEN="), "made", "written through the share: {}", lab.describe(&out));
    let refused = field("LAB-REFUSED=");
    assert!(refused.contains("not shared with the Docker sandbox"), "a folder not shared: {}", lab.describe(&out));
    assert!(text.contains("LAB-SANDBOX-STOPPED") && text.contains("LAB-NO-VMM-LEFT"), "{}", lab.describe(&out));
    eprintln!(
        "lab: the Docker sandbox on den-vmm answered {} ms after the first docker call",
        field("LAB-DOCKERD-MS=")
    );
    Ok(())
}
