//! A holder killed with SIGKILL under load, with real `wasmesh node run` processes: A and B hold
//! `echo`, C holds nothing and routes. Clients stream through C; the holder C uses is killed.
//! At least 99 % of all requests succeed, and none sent after the kill takes a second.

mod support;

use std::time::{Duration, Instant};

use support::load::{Load, Mesh};

#[test]
fn a_killed_holder_costs_almost_no_request() {
    let (mut victim, survivor, c) = Mesh::start("echo.wat", "echo").split_by_use("echo");
    let load = Load::start(&c.url, "echo", 4);
    load.wait_for_more(400);
    victim.kill();
    let killed_at = Instant::now();
    // The load goes on for 3 s after the kill.
    std::thread::sleep(Duration::from_secs(3));
    let samples = load.finish();

    let total = samples.len();
    let ok = samples.iter().filter(|s| s.ok).count();
    let after: Vec<_> = samples.iter().filter(|s| s.sent >= killed_at).collect();
    let slowest_after = after
        .iter()
        .map(|s| s.answered - s.sent)
        .max()
        .unwrap_or_default();
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
