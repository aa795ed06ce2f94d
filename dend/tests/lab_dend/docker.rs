//! The Docker sandbox on den-vmm, through dend's Docker bridge: dend makes the sandbox (dockerd on
//! Debian, its data disk, a shared folder over virtio-fs) on the first `docker` call, with
//! `engine: auto`, which picks den-vmm, jailed; the real `docker` CLI loads an image, runs a
//! container with `-v <shared>:/src` that reads and writes the host folder, and is refused a bind
//! of a folder that is not shared. Prints the time from the first `docker` call to dockerd
//! answering.

use den_tests::docker::busybox_image;
use den_tests::lab::Lab;
use std::path::Path;
use std::time::Duration;

/// The longest the scenario may run before the lab counts as wedged: the sandbox's root disk is
/// copied and dockerd starts on CPUs that TCG emulates.
const SCRIPT_LIMIT: Duration = Duration::from_secs(360);

/// Writes a busybox image (`busybox.tar`) and the `docker` CLI into the lab disk's folder: the CLI
/// is a static binary, so it goes on the lab disk rather than over the agent.
pub(crate) fn files(folder: &Path) {
    busybox_image(&folder.join("busybox.tar")).unwrap();
    std::fs::copy(which("docker"), folder.join("docker")).unwrap();
}

/// Where `program` is on the host's PATH.
fn which(program: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

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
"#;

/// Runs the scenario in `lab` (dend running with the sandbox's configuration) and checks what it
/// printed.
pub(crate) async fn run(lab: &Lab) -> Result<(), String> {
    let out = crate::run_phase(lab, "docker", CHECKS, SCRIPT_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
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
