//! The `docker` image: den-agent as init starts dockerd from `/etc/den/services/dockerd.toml`,
//! restarts it when it dies, and the Docker API answers inside the guest.

// A test's helpers may panic: a failed step is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use den_agent_proto::AgentClient;
use den_tests::{images, Guest, GuestOptions};
use std::time::{Duration, Instant};

async fn docker_info(c: &AgentClient, deadline: Duration) -> String {
    let start = Instant::now();
    loop {
        let out = c
            .exec_output(
                &["docker", "info", "--format", "{{.ServerVersion}} {{.Driver}}"],
                Bytes::new(),
                den_tests::EXEC,
            )
            .await
            .unwrap();
        if out.code == Some(0) {
            return String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        assert!(start.elapsed() < deadline, "dockerd did not answer: {}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_guest_runs_dockerd_as_a_supervised_service() {
    let store = images::shared_store();
    let image = images::build_builtin(&store, "docker");
    let opts = GuestOptions { memory_mib: 2048, agent_timeout: Duration::from_secs(180), ..Default::default() };
    let (guest, c) = Guest::boot(&store, &image, opts).await;
    eprintln!("docker guest answered after {:.1}s ({} retries)", guest.boot_secs, guest.retries);

    let first = docker_info(&c, Duration::from_secs(120)).await;
    assert!(
        first.split(' ').next().is_some_and(|v| v.chars().next().is_some_and(|ch| ch.is_ascii_digit())),
        "{first:?}"
    );

    // Kill dockerd: init notices and starts it again.
    let out = c
        .exec_output(&["/bin/sh", "-c", "kill -KILL $(cat /var/run/docker.pid)"], Bytes::new(), den_tests::EXEC)
        .await
        .unwrap();
    assert_eq!(out.code, Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let again = docker_info(&c, Duration::from_secs(120)).await;
    assert_eq!(again, first);
    let pid = c.exec_output(&["cat", "/var/run/docker.pid"], Bytes::new(), den_tests::EXEC).await.unwrap();
    eprintln!("dockerd restarted as pid {}", String::from_utf8_lossy(&pid.stdout).trim());
}
