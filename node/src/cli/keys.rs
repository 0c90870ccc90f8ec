//! `wasmesh keys gen|show|certify`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use wasmesh_keys::{MembershipCert, PublicKey, identity, key_file};

use crate::clock::now_ms;
use crate::fs_util::write_atomic;

/// Clock skew tolerated at the start of a certificate's validity.
const CERT_BACKDATE_MS: u64 = 60 * 60 * 1000;

/// Key management.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new ed25519 key (file mode 0600; never overwrites).
    Gen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print a key's public half (first line: 64 hex characters), peer id and fingerprint.
    Show {
        /// The key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Sign a membership certificate admitting a node to a private mesh.
    Certify {
        /// The mesh admin's key file.
        #[arg(long)]
        admin: PathBuf,
        /// The node's public key (64 hex characters, from `wasmesh keys show`).
        #[arg(long)]
        node: PublicKey,
        /// The mesh id (1-64 bytes).
        #[arg(long)]
        mesh: String,
        /// Days of validity.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Where to write the certificate.
        #[arg(long)]
        out: PathBuf,
    },
}

pub(super) fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Gen { out } => {
            let keys = key_file::generate_file(&out)?;
            super::emit(&format!("{}\n", keys.public()))?;
            eprintln!("wrote {} (mode 0600)", out.display());
        }
        KeysCommand::Show { key } => {
            let keys = key_file::load(&key)?;
            let public = keys.public();
            let peer_id = identity::libp2p_keypair(&keys).public().to_peer_id();
            let fingerprint = public.fingerprint();
            super::emit(&format!(
                "{public}\npeer id: {peer_id}\nfingerprint: {fingerprint}\n"
            ))?;
        }
        KeysCommand::Certify {
            admin,
            node,
            mesh,
            days,
            out,
        } => {
            let admin = key_file::load(&admin)?;
            if mesh.is_empty() || mesh.len() > wasmesh_keys::membership::MAX_MESH_ID_LEN {
                anyhow::bail!("mesh id must be 1-64 bytes");
            }
            let now = now_ms();
            let cert = MembershipCert {
                mesh,
                node,
                admin: admin.public(),
                not_before_ms: now.saturating_sub(CERT_BACKDATE_MS),
                expires_at_ms: now.saturating_add(u64::from(days) * 86_400_000),
            }
            .sign(&admin);
            write_atomic(&out, &cert.encode())
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "wrote {}: node {} in mesh {:?}, valid {days} days, admin {}",
                out.display(),
                node.fingerprint(),
                cert.cert.mesh,
                admin.public().fingerprint()
            );
        }
    }
    Ok(())
}
