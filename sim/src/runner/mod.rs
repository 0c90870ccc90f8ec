//! Runs a scenario on a real mesh: starts the nodes behind their relays, publishes, drives the
//! load while the timeline applies faults, watches modules become ready, waits for the mesh to
//! converge, and turns it all into a [`Report`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmesh_node::config::Replicate;
use wasmesh_protocol::Keypair;

use crate::cluster::{Cluster, NodeSetup, wait_for};
use crate::latency::LatencyMatrix;
use crate::load::{LoadContext, RequestRecord, run_load};
use crate::report::{Event, Packets, Report, round3};
use crate::scenario::{PublishSpec, Scenario};
use crate::summary::{Published, checks, missing, summarize};
use crate::traffic::{Snapshot, TrafficReport};

mod steps;

use steps::{Step, apply, publish};

/// How long the mesh may take to form, a module to spread, or the mesh to converge at the end.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);

/// How long `nodes` nodes may take to form a mesh: [`SETTLE_DEADLINE`], and a second more per
/// node past 40 (on two cores, a hundred nodes dialing 32 peers each take over a minute).
fn forming_deadline(nodes: usize) -> Duration {
    SETTLE_DEADLINE + Duration::from_secs(nodes.saturating_sub(40) as u64)
}
/// How often readiness is looked at (the resolution of propagation times).
const WATCH_EVERY: Duration = Duration::from_millis(5);

/// What to say while running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Nothing.
    Quiet,
    /// One line per step on stderr.
    Progress,
}

/// Runs `scenario` (called `name` in the report).
pub async fn run(scenario: &Scenario, name: &str, verbosity: Verbosity) -> anyhow::Result<Report> {
    let wall = Instant::now();
    let say = |text: String| {
        if verbosity == Verbosity::Progress {
            eprintln!("[{:>6.1} s] {text}", wall.elapsed().as_secs_f64());
        }
    };
    let matrix = LatencyMatrix::build(&scenario.latency_model()?, scenario.nodes, scenario.seed)?;
    let publisher = publisher_key(scenario.seed);
    let setups: Vec<NodeSetup> = (0..scenario.nodes)
        .map(|i| NodeSetup {
            replicate: replicate_for(scenario, i),
            hedging: scenario.hedging,
            status_interval: scenario.status_interval_ms.map(Duration::from_millis),
        })
        .collect();
    let mut cluster = Cluster::new(&matrix.one_way_ms, &setups, &[publisher.public()])?;
    let result = drive(scenario, name, &matrix, &publisher, &mut cluster, &say).await;
    cluster.shutdown().await;
    let mut report = result?;
    report.wall_ms = wall.elapsed().as_millis() as u64;
    Ok(report)
}

/// Per module name, per node: whether it is ready there (what the loads' oracle looks at).
type ReadyFlags = HashMap<String, Arc<Vec<AtomicBool>>>;

/// What the timeline produced.
#[derive(Debug, Default)]
struct Timeline {
    events: Vec<Event>,
    published: Vec<Published>,
    last_heal: Option<Instant>,
}

async fn drive(
    scenario: &Scenario,
    name: &str,
    matrix: &LatencyMatrix,
    publisher: &Keypair,
    cluster: &mut Cluster,
    say: &impl Fn(String),
) -> anyhow::Result<Report> {
    let setup_started = Instant::now();
    let ready = readiness_flags(scenario);
    let started = start_mesh(scenario, cluster, say).await?;
    let mut timeline = Timeline::default();
    for spec in scenario.publish.iter().filter(|p| p.at_ms.is_none()) {
        let module = publish_and_settle(scenario, spec, publisher, cluster, &ready, say).await?;
        timeline.published.push(module);
    }
    if scenario.settle_ms > 0 {
        say(format!(
            "letting the mesh settle for {} ms",
            scenario.settle_ms
        ));
        tokio::time::sleep(Duration::from_millis(scenario.settle_ms)).await;
    }
    let epoch = Instant::now();
    timeline.events.push(Event {
        at_ms: -(epoch.duration_since(setup_started).as_secs_f64() * 1000.0).round(),
        what: format!("{started} nodes started"),
    });
    let fixed = Fixed {
        scenario,
        matrix,
        publisher,
        ready: &ready,
    };
    let traffic_start = Snapshot::take(cluster);
    let records = load_under_faults(&fixed, cluster, epoch, &mut timeline, say).await?;
    let traffic = TrafficReport::between(&traffic_start, &Snapshot::take(cluster));

    // Convergence: every running holder gets every module, every running node knows it.
    let converged = wait_for("the mesh converges", SETTLE_DEADLINE, WATCH_EVERY, || {
        watch_ready(cluster, &mut timeline.published, &ready);
        missing(cluster, &timeline.published).is_empty()
    })
    .await;
    match &converged {
        Ok(took) => say(format!(
            "load done; every node had every module {} ms later",
            took.as_millis()
        )),
        Err(error) => say(wasmesh_node::cli::error_line(error)),
    }
    let mut report = summarize(
        scenario,
        name,
        matrix,
        cluster,
        &records,
        &timeline.published,
        timeline.last_heal,
    );
    report.missing = missing(cluster, &timeline.published);
    report.hedging = scenario.hedging;
    report.hedges = cluster.hedges();
    report.events = timeline.events;
    let (delivered, dropped_by_fault, unroutable) = cluster.packet_counts();
    report.packets = Packets {
        delivered,
        dropped_by_fault,
        unroutable,
    };
    report.traffic = traffic;
    report.checks = checks(scenario, &report);
    report.passed = report.checks.iter().all(|c| c.ok);
    Ok(report)
}

fn readiness_flags(scenario: &Scenario) -> ReadyFlags {
    let mut flags = ReadyFlags::new();
    for spec in &scenario.publish {
        flags.entry(spec.name.clone()).or_insert_with(|| {
            Arc::new(
                (0..scenario.nodes)
                    .map(|_| AtomicBool::new(false))
                    .collect(),
            )
        });
    }
    flags
}

/// Starts the nodes that are not late and waits until they form a mesh (`Cluster::is_meshed`);
/// returns how many.
async fn start_mesh(
    scenario: &Scenario,
    cluster: &mut Cluster,
    say: &impl Fn(String),
) -> anyhow::Result<usize> {
    let initial: Vec<usize> = (0..scenario.nodes)
        .filter(|i| !scenario.late.contains(i))
        .collect();
    say(format!("starting {} nodes", initial.len()));
    for &i in &initial {
        cluster.start(i).await?;
    }
    let took = wait_for(
        "the mesh forms",
        forming_deadline(initial.len()),
        WATCH_EVERY,
        || cluster.is_meshed(),
    )
    .await?;
    say(format!("mesh formed in {} ms", took.as_millis()));
    Ok(initial.len())
}

/// Publishes a module before the load and waits until its running holders have it ready and
/// every node can route to them.
async fn publish_and_settle(
    scenario: &Scenario,
    spec: &PublishSpec,
    publisher: &Keypair,
    cluster: &Cluster,
    ready: &ReadyFlags,
    say: &impl Fn(String),
) -> anyhow::Result<Published> {
    let mut module = publish(scenario, spec, publisher, cluster).await?;
    wait_for(
        &format!("{} is ready on its holders", spec.name),
        SETTLE_DEADLINE,
        WATCH_EVERY,
        || {
            watch_ready(cluster, std::slice::from_mut(&mut module), ready);
            module
                .holders
                .iter()
                .all(|h| !cluster.is_running(*h) || module.ready_at.contains_key(h))
        },
    )
    .await?;
    wait_for(
        &format!("every node can route {} to its holders", spec.name),
        SETTLE_DEADLINE,
        WATCH_EVERY,
        || cluster.is_routable(&module.blob, &module.holders),
    )
    .await?;
    let slowest = module
        .ready_at
        .values()
        .map(|t| t.duration_since(module.at).as_millis())
        .max()
        .unwrap_or(0);
    say(format!(
        "published {}: ready on {} holders in {slowest} ms",
        spec.name,
        module.ready_at.len(),
    ));
    Ok(module)
}

/// What does not change during a run.
#[derive(Debug)]
struct Fixed<'a> {
    scenario: &'a Scenario,
    matrix: &'a LatencyMatrix,
    publisher: &'a Keypair,
    ready: &'a ReadyFlags,
}

/// Sends the loads (on blocking threads) while applying the timeline's steps at their times;
/// returns every request's record.
async fn load_under_faults(
    fixed: &Fixed<'_>,
    cluster: &mut Cluster,
    epoch: Instant,
    timeline: &mut Timeline,
    say: &impl Fn(String),
) -> anyhow::Result<Vec<RequestRecord>> {
    let Fixed {
        scenario,
        matrix,
        publisher,
        ready,
    } = *fixed;
    let mut steps: Vec<(u64, Step)> = scenario
        .fault
        .iter()
        .map(|f| (f.at_ms, Step::Fault(f.clone())))
        .chain(
            scenario
                .publish
                .iter()
                .filter_map(|p| p.at_ms.map(|at| (at, Step::Publish(p.clone())))),
        )
        .collect();
    steps.sort_by_key(|(at, _)| *at);
    let mut steps = steps.into_iter().peekable();
    let rtt_ms: Vec<Vec<f64>> = (0..matrix.len())
        .map(|i| (0..matrix.len()).map(|j| matrix.rtt_ms(i, j)).collect())
        .collect();
    let contexts: Vec<LoadContext> = scenario
        .load
        .iter()
        .map(|load| LoadContext {
            ready: ready_flags(ready, &load.module, scenario.nodes),
            view: cluster.view(),
            rtt_ms: rtt_ms.clone(),
            holders: scenario.holders_of(&load.module),
            seed: scenario.seed,
            epoch,
        })
        .collect();
    let loads = scenario.load.clone();
    if !loads.is_empty() {
        let total: u32 = loads.iter().map(|l| l.requests).sum();
        say(format!("sending {total} requests"));
    }
    let load_task = tokio::task::spawn_blocking(move || {
        loads
            .iter()
            .zip(&contexts)
            .enumerate()
            .flat_map(|(i, (spec, context))| run_load(i, spec, context))
            .collect::<Vec<RequestRecord>>()
    });
    while steps.peek().is_some() || !load_task.is_finished() {
        while let Some((at, step)) =
            steps.next_if(|(at, _)| epoch + Duration::from_millis(*at) <= Instant::now())
        {
            let heals = matches!(&step, Step::Fault(fault) if fault.heal);
            let what = apply(scenario, step, publisher, cluster, &mut timeline.published).await?;
            if heals {
                timeline.last_heal = Some(Instant::now());
            }
            say(format!("t={at} ms: {what}"));
            timeline.events.push(Event {
                at_ms: round3(epoch.elapsed().as_secs_f64() * 1000.0),
                what,
            });
        }
        watch_ready(cluster, &mut timeline.published, ready);
        tokio::time::sleep(WATCH_EVERY).await;
    }
    load_task.await.context("the load generator failed")
}

/// Records when each module became ready on each running holder, and keeps the loads'
/// readiness flags current.
fn watch_ready(cluster: &Cluster, published: &mut [Published], flags: &ReadyFlags) {
    let now = Instant::now();
    for module in published {
        let module_ref = module.module_ref();
        for &holder in &module.holders {
            let is_ready = cluster
                .node(holder)
                .is_some_and(|n| n.is_ready(&module_ref));
            if let Some(flag) = flags.get(&module.name).and_then(|f| f.get(holder)) {
                flag.store(is_ready, Ordering::Relaxed);
            }
            if is_ready {
                module.ready_at.entry(holder).or_insert(now);
            }
        }
    }
}

/// The readiness flags of the module a load names.
fn ready_flags(flags: &ReadyFlags, module: &str, nodes: usize) -> Arc<Vec<AtomicBool>> {
    let name = module.split('@').next().unwrap_or(module);
    flags
        .get(name)
        .cloned()
        .unwrap_or_else(|| Arc::new((0..nodes).map(|_| AtomicBool::new(false)).collect()))
}

/// The scenario's publisher key, from its seed.
fn publisher_key(seed: u64) -> Keypair {
    let mut bytes = *b"wasmesh-sim publisher key 000000";
    bytes[24..].copy_from_slice(&seed.to_le_bytes());
    Keypair::from_seed(bytes)
}

/// A node replicates the modules that name it as a holder, and nothing else.
fn replicate_for(scenario: &Scenario, node: usize) -> Replicate {
    let names: Vec<String> = scenario
        .publish
        .iter()
        .filter(|p| p.holders.contains(&node))
        .map(|p| p.name.clone())
        .collect();
    if names.is_empty() {
        Replicate::None
    } else {
        Replicate::Names(names)
    }
}
