//! An LPK app with two services on den-vmm: the v2 sample (`web` and `backend` from an embedded
//! busybox image, `/lzcapp` shared over virtio-fs, health-gated, reaching each other by service
//! name on the app's network) installed with the real `den` CLI; `engine: auto` picks den-vmm,
//! jailed; then both routes answer through the app ingress (HTTPS, the app's own origin, a Den
//! token), which reaches each service VM over the app's bridge. Prints the install time.

use den_tests::lab::Lab;
use den_tests::lpk::{two_v2, write, TWO};
use std::path::Path;
use std::time::Duration;

/// The longest the scenario may run before the lab counts as wedged: the install converts the
/// image and boots two service VMs one after the other.
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// Writes the package, `two.lpk`, into the lab disk's folder.
pub(crate) fn files(folder: &Path) {
    write(&two_v2("1.0.0", &[]).unwrap(), folder, "two.lpk", false);
}

const CHECKS: &str = r#"
t0=$(up)
den app install /lab/disk/two.lpk > $D/install.out 2>&1 || { echo LAB-INSTALL-FAILED; cat $D/install.out; tail -30 $D/dend.log; exit 6; }
t1=$(up)
echo "LAB-INSTALL-MS=$(ms $t0 $t1)"
den --json app show cloud.den.test.two | grep -q '"state":"running"' && echo LAB-APP-RUNNING
for vm in two-web two-backend; do
  echo "LAB-ENGINE-$vm=$(den --json vm inspect $vm | grep -o '"engine":"[a-z]*"' | head -1)"
  PID=$(den --json vm inspect $vm | grep -o '"pid":[0-9]*' | cut -d: -f2)
  echo "LAB-UID-$vm=$(awk '/^Uid:/{print $2}' /proc/$PID/status)"
done
echo "LAB-BY-NAME=$(den vm exec two-web -- wget -q -O - http://backend:9000/)"
den user add ann --no-password --role viewer >/dev/null || exit 5
T=$(den token create --name apps --user ann 2>/dev/null) || exit 5
get() { curl -sk --max-time 30 --resolve two.box.test:8006:127.0.0.1 -o - -w ' %{http_code}' "$@" | tr -d '\n'; }
echo "LAB-NO-LOGIN=$(get https://two.box.test:8006/)"
echo "LAB-WEB=$(get -H "Authorization: Bearer $T" https://two.box.test:8006/)"
echo "LAB-API=$(get -H "Authorization: Bearer $T" https://two.box.test:8006/api/)"
den app uninstall cloud.den.test.two >/dev/null && echo LAB-UNINSTALLED
pidof den-vmm && echo LAB-LEFT-VMM || echo LAB-NO-VMM-LEFT
"#;

/// Runs the scenario in `lab` (dend running with the ingress on 127.0.0.1:8006) and checks what
/// it printed.
pub(crate) async fn run(lab: &Lab) -> Result<(), String> {
    let out = crate::run_phase(lab, "app", CHECKS, SCRIPT_LIMIT).await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let field = |key: &str| Lab::field(&out, key);
    assert!(text.contains("LAB-APP-RUNNING"), "{TWO}: {}", lab.describe(&out));
    let mut uids = vec![];
    for vm in ["two-web", "two-backend"] {
        let engine = field(&format!("LAB-ENGINE-{vm}="));
        assert_eq!(engine, "\"engine\":\"vmm\"", "{vm} on den-vmm: {}", lab.describe(&out));
        let uid: u32 = field(&format!("LAB-UID-{vm}=")).parse().unwrap_or(0);
        assert!(uid >= 2_000_000_000, "{vm}'s den-vmm is jailed, not uid {uid}: {}", lab.describe(&out));
        uids.push(uid);
    }
    assert_ne!(uids[0], uids[1], "each service VM has a uid of its own: {}", lab.describe(&out));
    assert_eq!(field("LAB-BY-NAME="), "backend-backend", "service names on the app's network: {}", lab.describe(&out));
    // The ingress: a login is needed, and with a token both routes answer, each from its service.
    assert!(field("LAB-NO-LOGIN=").ends_with(" 401"), "{}", lab.describe(&out));
    assert_eq!(field("LAB-WEB="), "<h1>two 1.0.0</h1> 200", "{}", lab.describe(&out));
    assert_eq!(field("LAB-API="), "backend-backend 200", "{}", lab.describe(&out));
    assert!(text.contains("LAB-UNINSTALLED") && text.contains("LAB-NO-VMM-LEFT"), "{}", lab.describe(&out));
    eprintln!("lab: {TWO} installed and running on den-vmm in {} ms", field("LAB-INSTALL-MS="));
    Ok(())
}
