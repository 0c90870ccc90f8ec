//! Every reason this node refuses outside input, named once. Each refusal is counted under its
//! reason (`wasmesh_rejections_total{reason="..."}`, by the metrics' `count_rejection`) and
//! logged with it; the label is [`Rejection::as_str`].

/// Declares the reasons with their metric labels.
macro_rules! rejections {
    ($( $(#[doc = $doc:literal])+ $variant:ident => $label:literal, )+) => {
        /// Why outside input was refused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Rejection {
            $( $(#[doc = $doc])+ $variant, )+
        }

        impl Rejection {
            /// Every reason, in declaration order.
            pub const ALL: &'static [Rejection] = &[$(Rejection::$variant,)+];

            /// The metric label and log field.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( Rejection::$variant => $label, )+
                }
            }
        }
    };
}

rejections! {
    // The gateway.
    /// A request body could not be read.
    BodyRead => "body_read",
    /// A request body did not arrive in time.
    BodyTimeout => "body_timeout",
    /// A request body was over the module's input limit.
    InputTooLarge => "input_too_large",
    /// The gateway held as many connections as it may.
    GatewayConnectionCap => "gateway_connection_cap",
    /// A publish bundle did not decode.
    PublishMalformed => "publish_malformed",
    /// A published module is not valid Wasm (or not runnable here).
    PublishInvalidModule => "publish_invalid_module",
    /// A published module's ABI differs from its manifest's.
    PublishAbiMismatch => "publish_abi_mismatch",
    /// A published module would go over the blob quota.
    PublishOverQuota => "publish_over_quota",
    /// A published module would eat into the disk reserve.
    PublishDiskFull => "publish_disk_full",

    // The QUIC data plane.
    /// A QUIC handshake failed.
    QuicHandshake => "quic_handshake",
    /// Too many QUIC handshakes were in progress.
    QuicHandshakeLimit => "quic_handshake_limit",
    /// A QUIC handshake took too long.
    QuicHandshakeTimeout => "quic_handshake_timeout",
    /// A QUIC handshake was asked to prove its source address first.
    QuicRetry => "quic_retry",
    /// A peer, or all peers, held as many QUIC connections as they may.
    QuicConnectionLimit => "quic_connection_limit",
    /// A peer's membership certificate expired.
    MembershipExpired => "membership_expired",
    /// A blob request was malformed or asked for what is not served.
    BlobRequest => "blob_request",
    /// A forwarded request was malformed.
    InvokeRequest => "invoke_request",
    /// A reach request (an observation, an introduction, a punch) was malformed or late.
    ReachRequest => "reach_request",
    /// A punch request came while as many punch dials as allowed were under way.
    PunchLimit => "punch_limit",
    /// A relay session was asked for while as many as allowed were open.
    RelayFull => "relay_full",
    /// A relay session reached its byte cap and was closed.
    RelayBytes => "relay_bytes",
    /// A dial back was asked of this node while as many as allowed were under way.
    DialBackFull => "dial_back_full",
    /// A libp2p relay reservation or circuit was asked for beyond this relay's bounds, or of a
    /// node that serves as no relay.
    ControlRelayRefused => "control_relay_refused",
    /// A peer's forwards held its share of this node's slots.
    ForwardShare => "forward_share",
    /// Forwarded requests held all the slots they may.
    ForwardShareAll => "forward_share_all",
    /// A provider served bytes that do not hash to the blob.
    BlobHashMismatch => "blob_hash_mismatch",

    // Peers and the control plane.
    /// Too many connections came from one address.
    InboundPerAddress => "inbound_per_address",
    /// A peer speaks another protocol version.
    PeerOtherVersion => "peer_other_version",
    /// A peer named an address this node does not dial.
    PeerAddressNotGlobal => "peer_address_not_global",
    /// The peer table had no room.
    PeerTableFull => "peer_table_full",
    /// A stranger was evicted for a peer with a better claim to the place.
    StrangerEvicted => "stranger_evicted",
    /// A peer is not a member of this private mesh.
    NotAdmitted => "not_admitted",
    /// A peer did not prove membership in time.
    AdmissionTimeout => "admission_timeout",
    /// A ping gave a network coordinate no real network has.
    CoordinateImplausible => "coordinate_implausible",
    /// A status failed its checks.
    BadStatus => "bad_status",
    /// A status did not decode.
    StatusMalformed => "status_malformed",
    /// A status came from a peer not admitted to this private mesh.
    StatusNotAdmitted => "status_not_admitted",
    /// A status came from a peer with no place in the table.
    StatusUnknownPeer => "status_unknown_peer",
    /// A sync message did not decode.
    SyncMalformed => "sync_malformed",
    /// An inbound sync failed.
    SyncInbound => "sync_inbound",
    /// An outbound sync failed.
    SyncOutbound => "sync_outbound",

    // Manifests.
    /// A gossip message carried no signature.
    GossipUnsigned => "gossip_unsigned",
    /// A gossip message came on a topic this node does not follow.
    GossipUnknownTopic => "gossip_unknown_topic",
    /// A gossiped manifest did not decode.
    GossipMalformedManifest => "gossip_malformed_manifest",
    /// Too many manifests were waiting for their signature check.
    VerifyBacklog => "verify_backlog",
    /// A manifest's publisher is not trusted here.
    UntrustedPublisher => "untrusted_publisher",
    /// A manifest's signature does not verify.
    BadSignature => "bad_signature",
    /// A module does not hash to its manifest's blob.
    HashMismatch => "hash_mismatch",
    /// A module's size differs from its manifest's.
    SizeMismatch => "size_mismatch",
    /// A manifest's name is not a valid module name.
    InvalidName => "invalid_name",
    /// A manifest is invalid in another way.
    InvalidManifest => "invalid_manifest",
    /// A manifest's publisher is not trusted with its name.
    NameOutOfScope => "name_out_of_scope",
    /// A publisher signed two blobs under one version.
    Equivocation => "equivocation",
    /// An equivocation was seen and the first blob kept.
    EquivocationSeen => "equivocation_seen",
    /// A manifest is not newer than the version held.
    NotNewer => "not_newer",
    /// A manifest's name belongs to another publisher.
    NameOwned => "name_owned",
    /// A manifest could not be stored.
    StoreFailed => "store_failed",
    /// An accepted manifest's file could not be written.
    StoreWriteFailed => "store_write_failed",

    // Holders and the directory.
    /// A holders message did not decode.
    HoldersMalformed => "holders_malformed",
    /// A holders message came from a peer not admitted to this private mesh.
    HoldersNotAdmitted => "holders_not_admitted",
    /// A holder record's signature does not verify.
    HolderBadRecord => "holder_bad_record",
    /// A node announced another node's record.
    HolderNotOwnRecord => "holder_not_own_record",
    /// The directory held as many holders of a blob as it may.
    DirectoryHoldersFull => "directory_holders_full",
    /// The directory held as many blobs as it may.
    DirectoryBlobsFull => "directory_blobs_full",
    /// One key announced as many blobs as it may.
    DirectoryHolderQuota => "directory_holder_quota",
    /// A holder record was too old.
    DirectoryStaleRecord => "directory_stale_record",
    /// An announcement named blobs this node is no directory node of.
    DirectoryNotResponsible => "directory_not_responsible",
    /// A claimed holder did not prove it holds the blob.
    PossessionUnproven => "possession_unproven",

    // Answers of peers.
    /// A forwarded answer's receipt does not verify or does not match.
    BadReceipt => "bad_receipt",
    /// A forwarded answer was contradicted by others.
    ReceiptContradicted => "receipt_contradicted",
    /// A spot check could not tell whether an answer was honest.
    SpotCheckInconclusive => "spot_check_inconclusive",
    /// A spot check got no answer.
    SpotCheckUnanswered => "spot_check_unanswered",

    // The disk.
    /// A blob would eat into the disk reserve.
    DiskFull => "disk_full",
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for reason in Rejection::ALL {
            let label = reason.as_str();
            assert!(seen.insert(label), "{label} named twice");
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
    }
}
