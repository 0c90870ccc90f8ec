//! A holder stopped with SIGTERM under load, with real `wasmesh node run` processes: A and B hold
//! `slow` (about 30 ms per request, so requests are always running there), C holds nothing and
//! routes. Clients stream through C; the holder C uses is sent SIGTERM. It tells its neighbours
//! it is leaving, finishes what it runs and exits 0; every request succeeds, and the router never
//! sees a forward fail.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::fixture_path;
use support::process::{self, DEADLINE, NodeProcess, wait_until};

struct Sample {
    sent: Instant,
    answered: Instant,
    ok: bool,
    detail: String,
    executed_by: String,
}

#[test]
fn a_holder_stopped_with_sigterm_costs_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = process::publisher_key(dir.path());
    let a = NodeProcess::start(&dir.path().join("a"), &public, &[], &[]);
    let b = NodeProcess::start(&dir.path().join("b"), &public, &[&a], &[]);
    let c = NodeProcess::start(
        &dir.path().join("c"),
        &public,
        &[&a, &b],
        &["--replicate", "none"],
    );
    process::publish(dir.path(), &key, &a, &fixture_path("slow.wat"), "slow");
    wait_until(
        "slow is ready on A and B, and C knows both",
        DEADLINE,
        || a.is_ready("slow") && b.is_ready("slow") && c.providers_of("slow") == 2,
    );
    let agent = process::agent(Duration::from_secs(30));
    wait_until("C forwards slow", DEADLINE, || {
        process::invoke(&agent, &c.url, "slow", b"x").is_ok_and(|a| a.status == 200)
    });

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let stop = stop.clone();
            let answered = answered.clone();
            let url = c.url.clone();
            std::thread::spawn(move || {
                let agent = process::agent(Duration::from_secs(30));
                let mut samples = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let input = format!("client {client} request {i}");
                    let sent = Instant::now();
                    let answer = process::invoke(&agent, &url, "slow", input.as_bytes());
                    let (ok, detail, executed_by) = match answer {
                        Ok(a) => (
                            a.status == 200 && a.body == input.as_bytes(),
                            format!("{} {}", a.status, String::from_utf8_lossy(&a.body)),
                            a.executed_by,
                        ),
                        Err(e) => (false, e, String::new()),
                    };
                    answered.fetch_add(1, Ordering::Relaxed);
                    samples.push(Sample {
                        sent,
                        answered: Instant::now(),
                        ok,
                        detail,
                        executed_by,
                    });
                    i += 1;
                }
                samples
            })
        })
        .collect();

    wait_until("the clients have 100 answers", DEADLINE, || {
        answered.load(Ordering::Relaxed) >= 100
    });
    let used = process::invoke(&agent, &c.url, "slow", b"who")
        .unwrap()
        .executed_by;
    let (mut victim, survivor) = if used == a.peer_id { (a, b) } else { (b, a) };
    assert_eq!(used, victim.peer_id, "C runs nothing itself");
    victim.terminate();
    let terminated_at = Instant::now();
    let exit = victim.wait_for_exit(DEADLINE);
    let exited_at = Instant::now();
    // The load goes on for a while after the holder has gone.
    let answered_at_exit = answered.load(Ordering::Relaxed);
    wait_until("the clients have 100 more answers", DEADLINE, || {
        answered.load(Ordering::Relaxed) >= answered_at_exit + 100
    });
    stop.store(true, Ordering::Relaxed);
    let samples: Vec<Sample> = clients
        .into_iter()
        .flat_map(|client| client.join().unwrap())
        .collect();

    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok).collect();
    let finished_by_victim_while_stopping = samples
        .iter()
        .filter(|s| s.executed_by == victim.peer_id && s.answered > terminated_at)
        .count();
    let after_exit = samples.iter().filter(|s| s.sent > exited_at);
    let served_by_survivor = after_exit
        .filter(|s| s.executed_by == survivor.peer_id)
        .count();
    println!(
        "{} requests, {} failed; the holder exited {:?} after SIGTERM, answering {} requests \
         after it; {served_by_survivor} requests sent after its exit were served by the other",
        samples.len(),
        failed.len(),
        exited_at - terminated_at,
        finished_by_victim_while_stopping,
    );
    assert!(
        exit.success(),
        "the stopped node exits 0 after draining, not {exit}"
    );
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}",
        failed.len(),
        samples.len(),
        failed.first().map(|s| &s.detail)
    );
    assert_eq!(
        c.metric("wasmesh_forward_failures_total"),
        0,
        "the router saw a forward fail: it learned of the stop from a broken connection"
    );
    assert!(
        finished_by_victim_while_stopping > 0,
        "the requests the holder was running when it got SIGTERM were not finished there"
    );
    assert!(
        served_by_survivor > 0,
        "the other holder took over no request"
    );
}
