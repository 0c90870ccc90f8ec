//! The scale model runs the cores: the same seed gives the same mesh, the mesh they form holds
//! together, and every request finds a holder.

use wasmesh_node::core::bootstrap::ENOUGH_NEIGHBOURS;

use super::*;

fn small(nodes: usize, seed: u64) -> ScaleParams {
    ScaleParams {
        requests: 300,
        publishes: 2,
        holders: 5,
        ..ScaleParams::new(nodes, seed)
    }
}

#[test]
fn the_same_seed_gives_the_same_report() {
    let params = small(120, 11);
    let mut a = run(&params);
    let mut b = run(&params);
    a.wall_ms = 0;
    b.wall_ms = 0;
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    let mut c = run(&ScaleParams { seed: 12, ..params });
    c.wall_ms = 0;
    assert_ne!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&c).unwrap()
    );
}

/// Joining one after the other through a node already in, the cores make a mesh where every
/// node has neighbours and gossip reaches everyone; every holder's announcement is kept by a
/// directory node, and every request finds a holder, through a neighbour's status or the
/// directory.
#[test]
fn the_mesh_the_cores_form_holds_together_and_every_request_finds_a_holder() {
    let params = ScaleParams {
        holders: 3,
        ..small(300, 3)
    };
    let report = run(&params);
    assert!(
        report.formation.mean_neighbours >= ENOUGH_NEIGHBOURS as f64,
        "{:?}",
        report.formation
    );
    assert_eq!(report.reached_fraction, 1.0);
    assert_eq!(report.directory.announced, params.holders);
    let routing = &report.routing;
    assert_eq!(routing.unrouted, 0, "{routing:?}");
    assert!(routing.via_directory_fraction > 0.0, "{routing:?}");
    assert!(routing.oracle_fraction > 0.0, "{routing:?}");
    assert_eq!(report.routing_every_holder_known.unrouted, 0);
}
