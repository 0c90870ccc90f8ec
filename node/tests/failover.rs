//! A holder killed with SIGKILL under load, with real `wasmesh node run` processes: A and B hold
//! `echo`, C holds nothing and routes. Clients stream through C; the holder C uses is killed.
//! At least 99 % of all requests succeed, and none sent after the kill takes a second.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::fixture_path;
use support::process::{self, DEADLINE, NodeProcess, wait_until};

struct Sample {
    sent: Instant,
    took: Duration,
    ok: bool,
    executed_by: String,
}

#[test]
fn a_killed_holder_costs_almost_no_request() {
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
    process::publish(dir.path(), &key, &a, &fixture_path("echo.wat"), "echo");
    wait_until(
        "echo is ready on A and B, and C knows both",
        DEADLINE,
        || a.is_ready("echo") && b.is_ready("echo") && c.providers_of("echo") == 2,
    );
    let agent = process::agent(Duration::from_secs(10));
    wait_until("C forwards echo", DEADLINE, || {
        process::invoke(&agent, &c.url, "echo", b"x").is_ok_and(|a| a.status == 200)
    });

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let stop = stop.clone();
            let answered = answered.clone();
            let url = c.url.clone();
            std::thread::spawn(move || {
                let agent = process::agent(Duration::from_secs(10));
                let mut samples = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let input = format!("client {client} request {i}");
                    let sent = Instant::now();
                    let answer = process::invoke(&agent, &url, "echo", input.as_bytes());
                    let took = sent.elapsed();
                    let (ok, executed_by) = match answer {
                        Ok(a) => (a.status == 200 && a.body == input.as_bytes(), a.executed_by),
                        Err(_) => (false, String::new()),
                    };
                    answered.fetch_add(1, Ordering::Relaxed);
                    samples.push(Sample {
                        sent,
                        took,
                        ok,
                        executed_by,
                    });
                    i += 1;
                }
                samples
            })
        })
        .collect();

    // Once the load runs, kill the holder C is using.
    wait_until("the clients have 400 answers", DEADLINE, || {
        answered.load(Ordering::Relaxed) >= 400
    });
    let used = {
        let agent = process::agent(Duration::from_secs(10));
        process::invoke(&agent, &c.url, "echo", b"who")
            .unwrap()
            .executed_by
    };
    let (mut victim, survivor) = if used == a.peer_id { (a, b) } else { (b, a) };
    assert_eq!(used, victim.peer_id, "C runs nothing itself");
    victim.kill();
    let killed_at = Instant::now();
    // The load goes on for 3 s after the kill.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let samples: Vec<Sample> = clients
        .into_iter()
        .flat_map(|client| client.join().unwrap())
        .collect();

    let total = samples.len();
    let ok = samples.iter().filter(|s| s.ok).count();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.sent >= killed_at).collect();
    let slowest_after = after.iter().map(|s| s.took).max().unwrap_or_default();
    let served_by_survivor = after
        .iter()
        .filter(|s| s.executed_by == survivor.peer_id)
        .count();
    println!(
        "{ok} of {total} requests ok; {} sent after the kill, {served_by_survivor} of them served \
         by the survivor; slowest after the kill {slowest_after:?}",
        after.len()
    );
    assert!(
        ok as f64 >= 0.99 * total as f64,
        "only {ok} of {total} succeeded"
    );
    assert!(
        slowest_after < Duration::from_secs(1),
        "a request sent after the kill took {slowest_after:?}"
    );
    assert!(served_by_survivor > 0, "the survivor took over no request");
}
