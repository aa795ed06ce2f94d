//! The `dev` image on den-vmm, through the SSH gateway: dend copies `dev`'s root disk from the lab
//! disk's store and boots it with `engine: auto`: systemd, sshd and the agent as a service, on
//! den-vmm, jailed. Then the real OpenSSH client logs in as a Den user through dend's SSH gateway,
//! which reaches the guest's sshd through the agent. Prints the time from `den vm start` to the
//! agent answering, and to the first SSH login.

use den_tests::lab::Lab;
use den_tests::lab_dev::{boot_steps, DevLab};
use std::time::Duration;

/// The longest the scenario may run before the lab counts as wedged: the root disk's copy and
/// systemd run on CPUs that TCG emulates, and the first login makes the guest's SSH keys.
const SCRIPT_LIMIT: Duration = Duration::from_secs(360);

/// After the boot: the engine and the jail, then logins through the gateway, then the VM goes.
const CHECKS: &str = r#"
den --json vm inspect dev1 | grep -o '"engine":"[a-z]*"' | head -1 | sed 's/^/LAB-DEV-/'
PID=$(den --json vm inspect dev1 | grep -o '"pid":[0-9]*' | cut -d: -f2)
echo "LAB-DEV-UID=$(awk '/^Uid:/{print $2}' /proc/$PID/status)"
den user add alice --no-password && den user key add alice @/lab/alice.pub && den user grant alice dev1 operator || exit 7
SSH="ssh -F /dev/null -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes -o IdentitiesOnly=yes -o LogLevel=ERROR -i /lab/alice -p 2222"
i=0; until $SSH dev1@127.0.0.1 'echo "LAB-SSH-USER=$(id -un)"; echo "LAB-SSH-CONN=$SSH_CONNECTION"; echo "LAB-SSH-HOST=$(cat /etc/hostname)"; echo "LAB-SSH-INIT=$(cat /proc/1/comm)"' > $D/ssh.out 2>$D/ssh.err; do
  i=$((i+1)); [ $i -lt 120 ] || { echo LAB-SSH-FAILED; cat $D/ssh.err; tail -20 $D/dend.log; break; }; sleep 1
done
t3=$(up)
cat $D/ssh.out
echo "LAB-SSH-MS=$(ms $t1 $t3)"
$SSH dev1:dev@127.0.0.1 'echo "LAB-SSH-NAMED=$(id -un)"'
$SSH dev1@127.0.0.1 'exit 3'; echo "LAB-SSH-STATUS=$?"
den vm stop dev1 && den vm rm dev1 && echo LAB-DEV-DELETED
pidof den-vmm && echo LAB-LEFT-VMM || echo LAB-NO-VMM-LEFT
"#;

/// Runs the scenario in `lab` (dend running, alice's key at `/lab/alice`) and checks what it
/// printed.
pub(crate) async fn run(lab: &Lab, dev: &DevLab) -> Result<(), String> {
    let script = format!("{}{CHECKS}", boot_steps("dev1", "auto"));
    let out = crate::run_phase(lab, "dev", &script, SCRIPT_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |key: &str| Lab::field(&out, key);
    assert_eq!(field("LAB-DEV-\"engine\":"), "\"vmm\"", "auto picks den-vmm for dev: {}", lab.describe(&out));
    let uid: u32 = field("LAB-DEV-UID=").parse().unwrap_or(0);
    assert!(uid >= 2_000_000_000, "dev's den-vmm is jailed, not uid {uid}: {}", lab.describe(&out));
    // Through the gateway: a real login on the guest's sshd, under systemd, on dev's own disk.
    assert_eq!(field("LAB-SSH-USER="), "root", "{}", lab.describe(&out));
    assert!(!field("LAB-SSH-CONN=").is_empty(), "sshd set SSH_CONNECTION: {}", lab.describe(&out));
    assert_eq!(field("LAB-SSH-HOST="), "den-dev", "{}", lab.describe(&out));
    assert_eq!(field("LAB-SSH-INIT="), "systemd", "{}", lab.describe(&out));
    assert_eq!(field("LAB-SSH-NAMED="), "dev", "a named guest account: {}", lab.describe(&out));
    assert_eq!(field("LAB-SSH-STATUS="), "3", "the exit status comes back: {}", lab.describe(&out));
    assert!(text.contains("LAB-DEV-DELETED") && text.contains("LAB-NO-VMM-LEFT"), "{}", lab.describe(&out));
    eprintln!(
        "lab: dev on den-vmm (kernel {}): create {} ms; from `den vm start`: agent {} ms, first ssh login {} ms",
        dev.image.kernel_release,
        field("LAB-CREATE-MS="),
        field("LAB-AGENT-MS="),
        field("LAB-SSH-MS="),
    );
    Ok(())
}
