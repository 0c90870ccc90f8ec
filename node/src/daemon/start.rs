//! Starting a node: the key and policy from the configuration, the store and executor, the data
//! plane and the swarm, then each service built with what it needs and its task spawned: the
//! event loop, the QUIC server with the forward server behind it, the ingestor, and the
//! gateway over its [`Api`].

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use libp2p::PeerId;
use tokio::sync::{Notify, watch};
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use wasmesh_keys::{SignedMembershipCert, TrustList, key_file};
use wasmesh_protocol::Keypair;

use super::services::{self, Planes};
use super::shared::Shared;
use super::{Node, listeners};
use crate::admission::Admission;
use crate::clock::{self, NodeClock};
use crate::config::NodeConfig;
use crate::control::handle::NodeHandle;
use crate::control::own_status::StatusSource;
use crate::control::owner::{IngestQueue, Owner, OwnerServices};
use crate::core::manifests::{self, Origin};
use crate::core::state::NodeState;
use crate::data::DataPlane;
use crate::executor::{Executor, ExecutorConfig};
use crate::local_run::{LocalLoad, LocalRunner};
use crate::metrics::Metrics;
use crate::own_addresses::OwnAddresses;
use crate::policy::Policy;
use crate::possession::PossessionChecks;
use crate::refusal_log::Refusals;
use crate::store::Store;
use crate::store_writer::StoreWriter;
use crate::tls::TlsIdentity;
use crate::view::Views;

/// Commands waiting for the event loop, at most.
const COMMAND_QUEUE: usize = 1024;

/// Why a node could not restore what its store holds.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The store could not be read.
    #[error("cannot read the store: {0}")]
    Io(#[from] std::io::Error),
    /// A stored manifest does not decode (damaged or tampered with).
    #[error(
        "{} is not a valid signed manifest; move it away to start (the node then accepts any version of that module again)",
        path.display()
    )]
    Unreadable {
        /// The file.
        path: std::path::PathBuf,
    },
}

impl Node {
    /// Starts a node. Returns once it listens on every address and serves HTTP.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
        let (keys, created) = key_file::load_or_generate(&config.key)?;
        let peer_id = wasmesh_keys::identity::libp2p_keypair(&keys)
            .public()
            .to_peer_id();
        let span = tracing::info_span!("node", id = %short_peer(&peer_id));
        if created {
            span.in_scope(|| tracing::info!(key = %config.key.display(), "created a new node key (mode 0600)"));
        }
        let store = Store::open(&config.data_dir).context("cannot open the store")?;
        let executor = Executor::new(ExecutorConfig {
            artifact_dir: Some(store.artifact_dir()),
            ..config.executor.clone()
        })?;
        let policy = Arc::new(load_policy(&config, &keys, executor.caps())?);
        let metrics = Arc::new(Metrics::default());
        let shared = Shared {
            refusals: Arc::new(Refusals::new(metrics.clone())),
            load: Arc::new(LocalLoad::new(executor.capacity())),
            keys,
            peer_id,
            policy,
            store,
            executor,
            metrics,
            views: Arc::new(Views::default()),
            clock: NodeClock::start(),
            tasks: TaskTracker::new(),
            providers_changed: Arc::new(Notify::new()),
        };
        start_services(config, shared).instrument(span).await
    }
}

/// The policy the configuration and this node's membership certificate describe.
fn load_policy(
    config: &NodeConfig,
    keys: &Keypair,
    caps: &wasmesh_protocol::Limits,
) -> anyhow::Result<Policy> {
    let membership =
        match &config.cert {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Some(SignedMembershipCert::decode(&bytes).with_context(|| {
                    format!("{} is not a membership certificate", path.display())
                })?)
            }
            None => None,
        };
    let admission = match (&config.mesh_admin, &membership) {
        (Some(admin), Some(cert)) => {
            let own = Admission::Private {
                admin: *admin,
                mesh: cert.cert.mesh.clone(),
            };
            own.check(&keys.public(), Some(cert), clock::now_ms())
                .context("this node's own membership certificate is not valid")?;
            own
        }
        (Some(_), None) => anyhow::bail!("--mesh-admin needs --cert"),
        (None, _) => Admission::Open,
    };
    let private = admission.is_private();
    Ok(Policy {
        trust: config.trust.iter().cloned().collect::<TrustList>(),
        admission,
        membership,
        replicate: config.replicate.clone(),
        caps: *caps,
        blob_quota: config.blob_quota,
        min_free_disk: config.min_free_disk,
        allow_private_addrs: config.allow_private_addrs,
        relay: config.relay,
        hedging: config.hedging,
        spot_check_rate: config.spot_check_rate.unwrap_or(if private {
            0.0
        } else {
            crate::request::SPOT_CHECK_RATE
        }),
    })
}

/// Binds the planes, builds the services and spawns their tasks.
async fn start_services(config: NodeConfig, shared: Shared) -> anyhow::Result<Node> {
    let identity = TlsIdentity::new(&shared.keys, shared.policy.membership.as_ref())?;
    let data_plane = DataPlane::bind(
        config.quic,
        identity,
        shared.policy.admission.clone(),
        shared.metrics.clone(),
    )?;
    let (swarm, listen_addrs) = listeners::start_swarm(&config, &shared).await?;
    let own_addresses = OwnAddresses::new(
        listen_addrs,
        config.announce.clone(),
        data_plane.local_addr()?,
        config.announce_quic,
    );
    let quic_addr = own_addresses.quic();
    let p2p_addrs = own_addresses
        .p2p()
        .into_iter()
        .map(|a| a.clone().with_p2p(shared.peer_id).unwrap_or(a))
        .collect();
    let (control, commands) = NodeHandle::channel(COMMAND_QUEUE);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let planes = Planes {
        store_writer: StoreWriter::spawn(
            shared.store.clone(),
            shared.metrics.clone(),
            &shared.tasks,
        ),
        local: LocalRunner::new(
            shared.executor.clone(),
            shared.metrics.clone(),
            shared.load.clone(),
        ),
        possession: Arc::new(PossessionChecks::new(
            data_plane.clone(),
            shared.tasks.clone(),
            shared.providers_changed.clone(),
            shared.metrics.clone(),
            shared.clock,
        )),
        data_plane,
        control,
        shutdown: shutdown_rx,
    };
    let (ingests, ingest_queue) = IngestQueue::new();
    let status = StatusSource::new(shared.keys.public(), own_addresses, shared.load.clone());
    let owner = restored_owner(&config, &shared, &planes, ingests, status)?;
    services::spawn_event_loop(&config, &shared, &planes, swarm, owner, commands);
    services::spawn_forward_server(&config, &shared, &planes);
    let ingestor = Arc::new(services::ingestor(&shared, &planes));
    shared
        .tasks
        .spawn(ingestor.clone().serve(ingest_queue).in_current_span());
    let api = Arc::new(services::api(&shared, &planes, ingestor)?);
    let (stopping, stopping_rx) = watch::channel(false);
    let (http_addr, gateway) = listeners::start_gateway(&config, api, &shared, stopping_rx).await?;
    Ok(Node {
        peer_id: shared.peer_id,
        public_key: shared.keys.public(),
        views: shared.views,
        metrics: shared.metrics,
        load: shared.load,
        control: planes.control,
        data_plane: planes.data_plane,
        store_writer: planes.store_writer,
        tasks: shared.tasks,
        stopping,
        gateway: std::sync::Mutex::new(Some(gateway)),
        drain_timeout: config.drain_timeout,
        shutdown,
        http_addr,
        quic_addr,
        p2p_addrs,
    })
}

/// The owner of the node's state, with the modules the store holds filed (and queued for
/// ingest once the first view holds them).
fn restored_owner(
    config: &NodeConfig,
    shared: &Shared,
    planes: &Planes,
    ingests: IngestQueue,
    status: StatusSource,
) -> anyhow::Result<Owner> {
    let state = NodeState::new(shared.peer_id, shared.policy.is_private())
        .allowing_private_addrs(shared.policy.allow_private_addrs)
        .with_bootstrap(&config.bootstrap, Instant::now());
    let mut owner = Owner::new(
        state,
        OwnerServices {
            policy: shared.policy.clone(),
            views: shared.views.clone(),
            store_writer: planes.store_writer.clone(),
            ingests,
            providers_changed: shared.providers_changed.clone(),
            metrics: shared.metrics.clone(),
            refusals: shared.refusals.clone(),
            status,
        },
    );
    let restored = restore(&mut owner, shared)?;
    owner.publish();
    tracing::info!(restored, quic_addr = %planes.data_plane.local_addr()?, "node starting");
    Ok(owner)
}

/// Files the manifests the store holds (no peer needed when their blobs are here); the number
/// taken.
fn restore(owner: &mut Owner, shared: &Shared) -> Result<usize, RestoreError> {
    let (stored, broken) = shared.store.load_manifests()?;
    // Skipping it would forget the module's version floor, and let an older version back in:
    // the operator decides.
    if let Some(path) = broken.into_iter().next() {
        return Err(RestoreError::Unreadable { path });
    }
    let verified = stored
        .into_iter()
        .filter_map(
            |signed| match manifests::verify(&signed, &shared.policy.trust) {
                Ok(verified) => Some(verified),
                Err(refusal) => {
                    shared
                        .refusals
                        .manifest(&signed.manifest, Origin::Store, &refusal);
                    None
                }
            },
        )
        .collect();
    Ok(owner.restore(verified))
}

/// The last characters of a peer id, to tell nodes apart in logs.
fn short_peer(peer: &PeerId) -> String {
    let text = peer.to_string();
    text[text.len().saturating_sub(8)..].to_owned()
}
