//! The timeline's steps: faults and publishes applied to a running cluster.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use wasmesh_node::client::Gateway;
use wasmesh_protocol::{Keypair, Limits};

use crate::cluster::Cluster;
use crate::scenario::{FaultSpec, PublishSpec, Scenario};
use crate::summary::Published;

/// Something the timeline does at its time.
#[derive(Debug, Clone)]
pub(super) enum Step {
    Fault(FaultSpec),
    Publish(PublishSpec),
}

/// Applies one timeline step; says what it did.
pub(super) async fn apply(
    scenario: &Scenario,
    step: Step,
    publisher: &Keypair,
    cluster: &mut Cluster,
    published: &mut Vec<Published>,
) -> anyhow::Result<String> {
    let mut done = Vec::new();
    match step {
        Step::Publish(spec) => {
            published.push(publish(scenario, &spec, publisher, cluster).await?);
            done.push(format!(
                "published {} through node {}",
                spec.name,
                spec.via.or(spec.holders.first().copied()).unwrap_or(0)
            ));
        }
        Step::Fault(fault) => {
            if !fault.partition.is_empty() {
                cluster.partition(&fault.partition);
                done.push(format!("partition {:?}", fault.partition));
            }
            if fault.heal {
                cluster.heal();
                done.push("heal".to_owned());
            }
            for &i in &fault.slow {
                let every = Duration::from_millis(fault.stall_every_ms.unwrap_or(1_000));
                let stalls = (fault.stall_ms > 0).then(|| crate::relay::Stalls {
                    stall: Duration::from_millis(fault.stall_ms),
                    every,
                    since: Instant::now(),
                });
                cluster.set_slow(i, stalls);
                done.push(match stalls {
                    Some(_) => format!(
                        "{i} stalls {} ms of every {} ms",
                        fault.stall_ms,
                        every.as_millis()
                    ),
                    None => format!("{i} normal again"),
                });
            }
            for &i in &fault.kill {
                cluster.kill(i).await;
                done.push(format!("kill {i}"));
            }
            for &i in fault.restart.iter().chain(&fault.start) {
                if cluster.is_running(i) {
                    continue;
                }
                cluster.start(i).await?;
                let verb = if fault.start.contains(&i) {
                    "start"
                } else {
                    "restart"
                };
                done.push(format!("{verb} {i}"));
            }
        }
    }
    Ok(done.join(", "))
}

/// Signs and publishes one module through its `via` node (or first holder).
pub(super) async fn publish(
    scenario: &Scenario,
    spec: &PublishSpec,
    publisher: &Keypair,
    cluster: &Cluster,
) -> anyhow::Result<Published> {
    let path = scenario.module_path(spec);
    let bytes = wasmesh_node::module_file::read_module(&path)?;
    let bundle = wasmesh_node::module_file::bundle(
        bytes,
        spec.name.clone(),
        spec.version,
        Limits::default(),
        publisher,
    )
    .with_context(|| format!("cannot publish {}", path.display()))?;
    let blob = bundle.manifest.manifest.blob;
    let via = spec
        .via
        .or_else(|| {
            spec.holders
                .iter()
                .copied()
                .find(|&h| cluster.is_running(h))
        })
        .context("no running node to publish through")?;
    let gateway = Gateway::new(&cluster.url(via));
    let at = Instant::now();
    tokio::task::spawn_blocking(move || gateway.publish(&bundle)?.ok())
        .await?
        .with_context(|| format!("publishing {} through node {via} failed", spec.name))?;
    Ok(Published {
        name: spec.name.clone(),
        version: spec.version,
        blob,
        holders: spec.holders.clone(),
        at,
        ready_at: BTreeMap::new(),
    })
}
