//! Every decoder of the wire: the first byte picks the message type, the rest is its bytes.
//! A decoder may refuse, never panic; what it accepts re-encodes to the same bytes (one
//! encoding per value, which signatures rely on).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmesh_keys::SignedMembershipCert;
use wasmesh_protocol::holders::{HolderAnswer, HolderRequest};
use wasmesh_protocol::wire::{
    BlobHeader, BlobRequest, InvokeReply, InvokeRequest, StatusAck, StatusMessage, SyncRequest,
    SyncResponse,
};
use wasmesh_protocol::receipt::SignedReceipt;
use wasmesh_protocol::{ModuleRef, PublishBundle, SignedManifest, codec};

/// Decodes `bytes` with `decode`; what decodes must encode back to `bytes`.
fn round_trip<T>(bytes: &[u8], decode: impl Fn(&[u8]) -> Result<T, codec::DecodeError>, encode: impl Fn(&T) -> Vec<u8>) {
    if let Ok(value) = decode(bytes) {
        assert_eq!(encode(&value), bytes, "a decoded value re-encodes differently");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 12 {
        0 => round_trip(bytes, StatusMessage::decode, StatusMessage::encode),
        1 => round_trip(bytes, SyncRequest::decode, SyncRequest::encode),
        2 => round_trip(bytes, SyncResponse::decode, SyncResponse::encode),
        3 => round_trip(bytes, BlobRequest::decode, BlobRequest::encode),
        4 => {
            if let Ok(header) = <&[u8; BlobHeader::SIZE]>::try_from(bytes) {
                if let Ok(decoded) = BlobHeader::decode(header) {
                    assert_eq!(&decoded.encode(), header);
                }
            }
        }
        5 => round_trip(bytes, InvokeRequest::decode, InvokeRequest::encode),
        6 => round_trip(bytes, InvokeReply::decode, InvokeReply::encode),
        7 => round_trip(bytes, SignedManifest::decode, SignedManifest::encode),
        8 => round_trip(bytes, |b| PublishBundle::decode(b, 1 << 20), PublishBundle::encode),
        9 => round_trip(bytes, SignedMembershipCert::decode, SignedMembershipCert::encode),
        10 => round_trip(bytes, SignedReceipt::decode, SignedReceipt::encode),
        11 => round_trip(bytes, StatusAck::decode, StatusAck::encode),
        12 => round_trip(bytes, HolderRequest::decode, HolderRequest::encode),
        13 => {
            round_trip(bytes, HolderAnswer::decode, HolderAnswer::encode);
            // Records a directory names are checked before use; checking never panics.
            if let Ok(answer) = HolderAnswer::decode(bytes) {
                for record in &answer.holders {
                    let _ = record.verify();
                }
            }
        }
        _ => {
            // Module references as users type them: what parses prints as text that parses to
            // the same reference.
            if let Ok(text) = std::str::from_utf8(bytes)
                && let Ok(module_ref) = text.parse::<ModuleRef>()
            {
                assert_eq!(module_ref.to_string().parse::<ModuleRef>(), Ok(module_ref));
            }
        }
    }
});
