//! A holder stopped with SIGTERM under load, with real `wasmesh node run` processes: A and B hold
//! `slow` (about 30 ms per request, so requests are always running there), C holds nothing and
//! routes. Clients stream through C; the holder C uses is sent SIGTERM. It tells its neighbours
//! it is leaving, finishes what it runs and exits 0; every request succeeds, and the router never
//! sees a forward fail.

mod support;

use std::time::Instant;

use support::load::{Load, Mesh, Sample};
use support::wait::DEADLINE;

#[test]
fn a_holder_stopped_with_sigterm_costs_no_request() {
    let (mut victim, survivor, c) = Mesh::start("slow.wat", "slow").split_by_use("slow");
    let load = Load::start(&c.url, "slow", 4);
    load.wait_for_more(100);

    victim.terminate();
    let terminated_at = Instant::now();
    let exit = victim.wait_for_exit(DEADLINE);
    let exited_at = Instant::now();
    // The load goes on for a while after the holder has gone.
    load.wait_for_more(100);
    let samples = load.finish();

    let failed: Vec<&Sample> = samples.iter().filter(|s| !s.ok).collect();
    let finished_by_victim_while_stopping = samples
        .iter()
        .filter(|s| s.executed_by == victim.peer_id && s.answered > terminated_at)
        .count();
    let served_by_survivor = samples
        .iter()
        .filter(|s| s.sent > exited_at && s.executed_by == survivor.peer_id)
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
